"""Held-out accuracy on verifiable prompts: greedy answers scored by the programmatic rewards.

Each evaluated model writes `NAME.jsonl` (prompt, reference, response, score, whether it hit the
token limit (`truncated`) and whether it repeats itself (`repeats`, `evals.signals`) per row) and
`NAME.json` (the summary: accuracy = the mean programmatic score, mean response length in tokens,
the shares of answers that repeat themselves and that hit the token limit, the first three answers
as `examples`) into the evaluation folder; a summary already there is read back instead of
recomputed (one written before the repetition share existed is completed from its answers).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..config.pipeline import EvaluateConfig
from ..config.recipe import ModelConfig
from ..errors import DataError, RecipeError, read_json
from ..evals.signals import answer_signals, repeats_itself
from ..generation.backends import open_backend, sampling_dtype
from ..generation.prompts import PromptRenderer, check_lengths, read_prompts
from ..models.loading import load_tokenizer
from ..rewards.programmatic import check_references
from ..rewards.scorer import Scorer
from .lock import folder_lock
from .shards import claim, fingerprint, read_jsonl, write_atomic

logger = logging.getLogger("simpo")

EXAMPLES = 3  # answers kept in the summary, for the pipeline's before/after


def run_evaluate(model_config: ModelConfig, config: EvaluateConfig, rewards: list[dict], name: str) -> dict:
    config.validate()
    rewards = [spec for spec in rewards if spec["type"] != "reward_model"]
    if not rewards:
        raise RecipeError("evaluate needs a programmatic reward (numeric_answer or constraints) in annotate.rewards")
    folder = Path(config.output)
    tokenizer = load_tokenizer(model_config)
    renderer = PromptRenderer(tokenizer)
    rows, skipped = read_prompts(config.prompts, config.split, config.max_prompts)
    rows, prompt_ids, _ = check_lengths(rows, renderer, float("inf"), config.prompts)  # control tokens; no length limit
    records = [{"row": row.row, "prompt": row.prompt, **row.extra} for row in rows]
    check_references(rewards, records, f"{config.prompts} [{config.split}]")
    dtype = sampling_dtype(config.dtype or model_config.torch_dtype, "evaluate.dtype")
    with folder_lock(folder):  # written from here on, its input checked
        claim(folder, {"stage": "evaluate", "prompts": fingerprint(prompt_ids), "rewards": rewards,
                       "max_new_tokens": config.max_new_tokens, "dtype": dtype})
        summary_path = folder / f"{name}.json"
        if summary_path.is_file():
            summary = read_json(summary_path, dict, DataError, "an evaluation summary")
            if not {"model", "prompts", "accuracy", "mean_length_tokens"} <= set(summary):
                raise DataError(f"{summary_path}: not a summary as simpo evaluate writes it; the file is damaged: delete it to evaluate again")
            if summary["model"] != model_config.model_name_or_path:
                raise RecipeError(f"{summary_path} evaluated {summary['model']}, not {model_config.model_name_or_path}: delete it to evaluate again")
            return _with_signals(summary, folder / f"{name}.jsonl")
        backend = open_backend("auto", model_config, tokenizer, renderer.stop_ids, config.batch_size, dtype)
        _, responses, _ = next(backend.sample_shards([prompt_ids], [0], 0.0, 1.0, config.max_new_tokens))  # greedy: the seed is unused
        texts = [response[0] for response in responses]
        scores = Scorer(rewards).score_rows([{**r, "all_generated_responses": [str(t)]} for r, t in zip(records, texts)], None)
        lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
        truncated = [getattr(text, "truncated", None) for text in texts]
        answers = [{**record, "response": str(text), "score": score[0], "truncated": cut, "repeats": repeats_itself(text)}
                   for record, text, score, cut in zip(records, texts, scores, truncated)]
        write_atomic(folder / f"{name}.jsonl", "".join(json.dumps(answer) + "\n" for answer in answers))
        signals = answer_signals(texts, lengths, None if None in truncated else truncated)
        summary = {
            "model": model_config.model_name_or_path, "prompts": len(rows), "skipped": sum(skipped.values()),
            "accuracy": sum(score[0] for score in scores) / len(scores), **signals,
            "examples": [{"prompt": answer["prompt"], "response": answer["response"]} for answer in answers[:EXAMPLES]],
        }
        write_atomic(summary_path, json.dumps(summary, indent=2))
        logger.info("evaluate %s: accuracy %.4f on %d prompts; %.0f%% repeat themselves, mean length %.1f tokens", name,
                    summary["accuracy"], len(rows), 100 * summary["repetitive"], summary["mean_length_tokens"])
    return summary


def _with_signals(summary: dict, answers_path: Path) -> dict:
    """A summary written before it held the repetition share and the examples, completed from its
    answers (the file is left as it is)."""
    if "repetitive" in summary or not answers_path.is_file():
        return summary
    answers = list(read_jsonl(answers_path))
    texts = [answer["response"] for answer in answers]
    return {**summary, "repetitive": sum(map(repeats_itself, texts)) / max(len(texts), 1), "truncated": None,
            "examples": [{"prompt": answer["prompt"], "response": answer["response"]} for answer in answers[:EXAMPLES]]}
