"""Log-probabilities of response tokens, from one forward pass over a padded batch."""

from __future__ import annotations

import torch

from .data.collate import IGNORE


def response_logps(model, input_ids, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the sum of log pi(y_t | ...) over response tokens, and how many there are.

    Only positions whose next token is a response token are projected onto the vocabulary: the
    model's own `logits_to_keep` takes a boolean mask, so prompt and padding positions never get
    logits. Models that soft-cap their logits (Gemma-2) do it inside that same forward.
    """
    targets = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE
    output = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False)
    logits = output.logits  # [kept positions, vocab]
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[keep[:, :-1]].unsqueeze(-1)).squeeze(-1)
    rows = keep.nonzero()[:, 0]
    sums = torch.zeros(labels.shape[0], dtype=token_logps.dtype, device=token_logps.device).index_add(0, rows, token_logps)
    return sums, keep.sum(dim=1)
