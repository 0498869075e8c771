"""`simpo binarize`: the best and the worst scored response of each prompt as a preference pair.

As the official recipe does: chosen = the highest-scored response, rejected = the lowest (the first
of equals). A prompt is dropped, and counted, when all its scores tie, when its best and worst
responses are the same text, or when the score gap is below `min_score_gap`. The output is the
layout of `princeton-nlp/gemma2-ultrafeedback-armorm` (`prompt_id, prompt, all_generated_responses,
all_rm_scores, chosen, rejected`, chosen/rejected as full conversations) as `train.jsonl` and
`test.jsonl` (not written when `test_size` holds out no pair), which `simpo train` reads directly.

`drop_truncated` leaves out, before pairing, the responses that hit the token limit without a stop
token (the official pipeline keeps them). `stats.json` beside the pairs (`pair_stats`) holds the
signals of the samples: the share of prompts that gave a pair, the mean score, how many responses
hit the token limit, the mean chosen and rejected lengths; the same is logged in one line.
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
from .shards import claim, damaged_files, fingerprint, is_complete, mark_complete, read_stage, write_atomic, write_if_changed

logger = logging.getLogger("simpo")

STATS = "stats.json"  # pair_stats of the folder's pairs


def binarize_row(row: dict, min_score_gap: float = 0.0, drop_truncated: bool = False) -> dict | str:
    """The preference pair of a scored row, or the reason it is dropped. Under `drop_truncated` the
    responses that hit the token limit take no part (the row must record `truncated`)."""
    responses, scores = row["all_generated_responses"], row["all_rm_scores"]
    if len(responses) != len(scores) or len(responses) < 2:
        raise RecipeError(f"prompt {row['prompt_id']}: needs two or more responses with one score each")
    candidates = range(len(scores))
    if drop_truncated:
        if "truncated" not in row:
            raise RecipeError(f"binarize.drop_truncated: prompt {row['prompt_id']} has no record of which responses hit the token "
                              "limit (generated before simpo recorded it); generate again, or leave drop_truncated false")
        candidates = [i for i in candidates if not row["truncated"][i]]
        if len(candidates) < 2:
            return "fewer than two responses ended before the token limit"
    best = max(candidates, key=lambda i: (scores[i], -i))
    worst = min(candidates, key=lambda i: (scores[i], i))
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


def pair_stats(rows: list[dict], pairs: list[dict], dropped: Counter) -> dict:
    """What the scored rows and their pairs say about the samples: counts, the share of prompts that gave
    a pair, the mean score, the responses that hit the token limit, the chosen and rejected lengths
    (in generated tokens where generation recorded them, else in characters)."""
    responses = sum(len(row["all_generated_responses"]) for row in rows)
    scores = [score for row in rows for score in row["all_rm_scores"]]
    recorded = all("truncated" in row and "response_tokens" in row for row in rows)
    by_id = {row["prompt_id"]: row for row in rows}

    def length(pair: dict, side: str) -> float:
        row, text = by_id[pair["prompt_id"]], pair[side][-1]["content"]
        return row["response_tokens"][row["all_generated_responses"].index(text)] if recorded else len(text)

    return {
        "prompts": len(rows), "pairs": len(pairs), "pair_share": len(pairs) / max(len(rows), 1),
        "dropped": dict(dropped), "responses": responses, "mean_score": sum(scores) / max(len(scores), 1),
        "truncated": sum(sum(row["truncated"]) for row in rows) if recorded else None,
        "length_unit": "tokens" if recorded else "characters",
        "chosen_length": sum(length(pair, "chosen") for pair in pairs) / max(len(pairs), 1),
        "rejected_length": sum(length(pair, "rejected") for pair in pairs) / max(len(pairs), 1),
    }


def stats_line(stats: dict) -> str:
    truncated = ("no record of which hit the token limit (generated before simpo recorded it)" if stats["truncated"] is None
                 else f"{stats['truncated']} ({stats['truncated'] / max(stats['responses'], 1):.1%}) hit the token limit without a stop token")
    return (f"binarize: {stats['pairs']} pairs from {stats['prompts']} prompts ({stats['pair_share']:.0%}); mean score "
            f"{stats['mean_score']:.3f} over {stats['responses']} responses, {truncated}; mean length chosen "
            f"{stats['chosen_length']:.1f}, rejected {stats['rejected_length']:.1f} {stats['length_unit']}")


def run_binarize(config: BinarizeConfig) -> str:
    config.validate()
    output = Path(config.output)
    rows = read_stage(config.input)
    splits, dropped = split_pairs(rows, config)  # quick; every error before anything is written
    stats = pair_stats(rows, splits["train"] + splits["test"], dropped)
    settings = {"stage": "binarize", "input": fingerprint(rows), "test_size": config.test_size,
                "min_score_gap": config.min_score_gap, "seed": config.seed}
    if config.drop_truncated:  # recorded only when set, so that folders from before the key still resume
        settings["drop_truncated"] = True
    with folder_lock(output):  # written from here on, its input read
        claim(output, settings)
        # What the samples and pairs say (STATS): written beside the pairs, also into a folder finished before it existed.
        write_if_changed(output / STATS, json.dumps(stats, indent=2) + "\n")
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
        logger.warning("%s", stats_line(stats))
    return config.output


def split_pairs(rows: list[dict], config: BinarizeConfig) -> tuple[dict[str, list[dict]], Counter]:
    """The pairs of the scored rows as {"train": [...], "test": [...]} (a seeded split, each in input
    order), and the count of each reason a prompt was dropped."""
    pairs, dropped = [], Counter()
    for row in rows:
        pair = binarize_row(row, config.min_score_gap, config.drop_truncated)
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
