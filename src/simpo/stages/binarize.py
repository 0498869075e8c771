"""`simpo binarize`: the best and the worst scored response of each prompt as a preference pair.

As the official recipe does: chosen = the highest-scored response, rejected = the lowest (the first
of equals). A prompt is dropped, and counted, when all its scores tie, when its best and worst
responses are the same text, or when the score gap is below `min_score_gap`. The output is the
layout of `princeton-nlp/gemma2-ultrafeedback-armorm` (`prompt_id, prompt, all_generated_responses,
all_rm_scores, chosen, rejected`, chosen/rejected as full conversations) as `train.jsonl` and
`test.jsonl` (not written when `test_size` holds out no pair), which `simpo train` reads directly.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path

from ..config.pipeline import BinarizeConfig
from ..errors import RecipeError
from ..generation.prompts import prompt_messages
from .lock import folder_lock
from .shards import claim, damaged_files, fingerprint, is_complete, mark_complete, read_stage, write_atomic

logger = logging.getLogger("simpo")


def binarize_row(row: dict, min_score_gap: float = 0.0) -> dict | str:
    """The preference pair of a scored row, or the reason it is dropped."""
    responses, scores = row["all_generated_responses"], row["all_rm_scores"]
    if len(responses) != len(scores) or len(responses) < 2:
        raise RecipeError(f"prompt {row['prompt_id']}: needs two or more responses with one score each")
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    worst = min(range(len(scores)), key=lambda i: (scores[i], i))
    if scores[best] == scores[worst]:
        return "all scores tie"
    if responses[best].strip() == responses[worst].strip():
        return "best and worst responses identical"
    if scores[best] - scores[worst] < min_score_gap:
        return "score gap below min_score_gap"
    messages = prompt_messages(row["prompt"], f"prompt {row['prompt_id']}")
    return {
        "prompt_id": row["prompt_id"], "prompt": row["prompt"],
        "all_generated_responses": responses, "all_rm_scores": scores,
        "chosen": messages + [{"role": "assistant", "content": responses[best]}],
        "rejected": messages + [{"role": "assistant", "content": responses[worst]}],
    }


def run_binarize(config: BinarizeConfig) -> str:
    config.validate()
    output = Path(config.output)
    rows = read_stage(config.input)
    splits, dropped = split_pairs(rows, config)  # quick; every error before anything is written
    with folder_lock(output):  # written from here on, its input read
        claim(output, {"stage": "binarize", "input": fingerprint(rows), "test_size": config.test_size,
                       "min_score_gap": config.min_score_gap, "seed": config.seed})
        if is_complete(output):
            damaged = damaged_files(output)
            if not damaged:
                return config.output
            logger.warning("binarize: %s; writing the pairs again", "; ".join(damaged))
        written = []
        for split, split_rows in splits.items():
            if split_rows:  # no test pairs: no test.jsonl, and training runs without evaluation
                write_atomic(output / f"{split}.jsonl", "".join(json.dumps(row) + "\n" for row in split_rows))
                written.append(f"{split}.jsonl")
        mark_complete(output, written)
        logger.warning(
            "binarize: %d pairs (train %d, test %d) from %d prompts; dropped: %s", len(splits["train"]) + len(splits["test"]),
            len(splits["train"]), len(splits["test"]), len(rows), ", ".join(f"{n} {why}" for why, n in dropped.items()) or "none",
        )
    return config.output


def split_pairs(rows: list[dict], config: BinarizeConfig) -> tuple[dict[str, list[dict]], Counter]:
    """The pairs of the scored rows as {"train": [...], "test": [...]} (a seeded split, each in input
    order), and the count of each reason a prompt was dropped."""
    pairs, dropped = [], Counter()
    for row in rows:
        pair = binarize_row(row, config.min_score_gap)
        if isinstance(pair, str):
            dropped[pair] += 1
        else:
            pairs.append(pair)
    if not pairs:
        raise RecipeError(f"binarize: no prompt of {config.input} has responses that differ in score ({dict(dropped)})")
    order = list(range(len(pairs)))
    random.Random(config.seed).shuffle(order)
    test_count = int(config.test_size) if config.test_size >= 1 else round(config.test_size * len(pairs))
    if test_count >= len(pairs):
        raise RecipeError(f"binarize.test_size ({config.test_size:g}) holds out all {len(pairs)} pairs ({dict(dropped) or 'none'} "
                          "dropped); lower it to leave pairs for training")
    test = set(order[:test_count])
    return {"train": [pair for i, pair in enumerate(pairs) if i not in test], "test": [pair for i, pair in enumerate(pairs) if i in test]}, dropped
