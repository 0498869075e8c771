"""Log-probabilities of response tokens without the full [batch, tokens, vocab] logits.

Only positions whose next token is a response token are projected onto the vocabulary. With
`chunk_size > 0` the model body runs to its final hidden states (its own head sees no position),
and the head, the final logit soft-cap (Gemma-2), the log-softmax and the gather run over chunks of
`chunk_size` tokens, each recomputed in the backward pass: the extra memory is about one chunk
times the vocabulary instead of every response token times the vocabulary. With `chunk_size == 0`
the model's own head projects the response positions (`logits_to_keep` with a boolean mask).

Batches are padded ([rows, T] with `attention_mask`) or packed (one row, `position_ids` restarting
at each sequence, no `attention_mask`); `sequence_index` says which sequence each token is in.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from .data.collate import IGNORE


def _chunk_logps(head, softcap: float | None, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def response_logps(model, batch: dict[str, torch.Tensor], chunk_size: int = 0, base_model=None):
    """Per sequence: the sum of log pi(y_t | ...) over its response tokens, and their count.

    `model` is called for the forward (it may be wrapped by DDP/DeepSpeed); `base_model`, the
    unwrapped model, supplies the output head and the soft-cap when chunking.
    """
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "position_ids") if key in batch}
    kept_targets = targets[keep[:, :-1]]
    if chunk_size > 0:
        base_model = base_model if base_model is not None else model
        output = model(**inputs, logits_to_keep=torch.zeros_like(keep), output_hidden_states=True, use_cache=False)
        hidden = output.hidden_states[-1][keep]  # the final (normed) hidden state of response positions
        head = base_model.get_output_embeddings()
        softcap = getattr(base_model.config, "final_logit_softcapping", None)
        token_logps = torch.cat([
            checkpoint(_chunk_logps, head, softcap, hidden[i : i + chunk_size], kept_targets[i : i + chunk_size], use_reentrant=False)
            for i in range(0, hidden.shape[0], chunk_size)
        ])
    else:
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits  # [kept positions, vocab]
        token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, kept_targets.unsqueeze(-1)).squeeze(-1)
    sequence = batch["sequence_index"][keep]
    count = int(batch["sequence_index"].max()) + 1
    sums = torch.zeros(count, dtype=token_logps.dtype, device=token_logps.device).index_add(0, sequence, token_logps)
    return sums, torch.bincount(sequence, minlength=count)
