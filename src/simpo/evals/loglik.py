"""MMLU by answer-letter log-likelihood, the cheaper mode (`--mmlu-mode loglik`), as lm-eval scores
multiple choice: no generation, no chat template.

The context is the question and its lettered choices ending in `Answer:`; each continuation is a
space and a letter. A continuation's tokens are those of `context + continuation` after the
context's own tokens (so a merge across the boundary is scored as lm-eval scores it), and its score
is the sum of their log-probabilities; the prediction is the letter with the highest score.
"""

from __future__ import annotations

import torch

from .zeroeval import LETTERS


def mmlu_context(question: str, choices: list[str]) -> str:
    lines = [question.strip()] + [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer:"


def continuation_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 16) -> list[float]:
    """Sum of the log-probabilities of each continuation's tokens after its context."""
    encoded = []
    for context, continuation in pairs:
        context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        encoded.append((whole, len(context_ids)))
    scores = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        keep = max(len(ids) - split for ids, split in batch) + 1  # the logits that predict continuation tokens
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, (ids, _) in enumerate(batch):  # left padding: every sequence ends in the last column
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            mask[row, width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                           position_ids=positions.to(model.device), logits_to_keep=keep).logits.float()
        for row, (ids, split) in enumerate(batch):
            count = len(ids) - split
            targets = torch.tensor(ids[split:], device=logits.device)
            logprobs = logits[row, keep - 1 - count : keep - 1].log_softmax(-1)
            scores.append(logprobs[torch.arange(count, device=logits.device), targets].sum().item())
    return scores


def predict_letters(model, tokenizer, items: list[dict], batch_size: int = 16) -> list[str]:
    """The most likely answer letter of each multiple-choice item."""
    pairs = [(mmlu_context(item["question"], item["choices"]), f" {LETTERS[i]}") for item in items for i in range(len(item["choices"]))]
    scores = continuation_logprobs(model, tokenizer, pairs, batch_size)
    letters, at = [], 0
    for item in items:
        count = len(item["choices"])
        best = max(range(count), key=lambda i: scores[at + i])
        letters.append(LETTERS[best])
        at += count
    return letters
