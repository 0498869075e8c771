"""Log-probabilities of response tokens without the full [batch, tokens, vocab] logits.

Only positions whose next token is a response token are projected onto the vocabulary. With
`chunk_size > 0` the model body runs to its final hidden states (its own head sees no position),
and the head, the final logit soft-cap (Gemma-2), the log-softmax and the gather run over chunks of
`chunk_size` tokens, recomputed in the backward pass (for a plain linear head by `_LinearHeadLogps`,
whose gradient is written out; for any other head module by checkpointing it): the extra memory is
about one chunk times the vocabulary instead of every response token times the vocabulary. With
`chunk_size == 0` the model's own head projects the response positions (`logits_to_keep` with a
boolean mask).

Under DeepSpeed ZeRO-3 the head's weight is partitioned across processes and only whole while its
module runs: `_LinearHeadLogps` then runs as the head module's forward (`_as_head_forward`), so that
DeepSpeed's hooks gather the weight for its forward and its backward pass and release it after, as
for any linear layer, and the chunked path is the same with a sharded head. Under FSDP2 the root
module, which holds the head, keeps its parameters unsharded from its forward to its backward, so
the head is an ordinary weight there. A head that is neither (LoRA, FSDP2 with the head in a unit of
its own) is called as a module per chunk, checkpointed.

Batches come in any layout of `data.collate` (padded, packed, shared prompt); each names the
positions to score (`logit_index`, flat over rows x width), their targets and their sequences.

Beside the log-probs, each sequence's sum over its response positions of the mean logit (over the
vocabulary, after the soft-cap) is returned, for the official trainer's `logits/chosen|rejected`
metrics; it comes from the logits each chunk computes anyway (without a soft-cap, from one
matrix-vector product), never from a [tokens, vocab] tensor of its own.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from .blocked_attention import compute_dtype


class ResponseLogps(NamedTuple):
    """Per sequence: the sum of its response tokens' log-probs, their count, and the sum over them of
    the mean logit (over the vocabulary)."""

    sums: torch.Tensor
    counts: torch.Tensor
    logit_sums: torch.Tensor


def _chunk_logps(head, softcap: float | None, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each token's log-prob, and its mean logit (not differentiated) stacked as a second column."""
    logits = _softcap(head(hidden), softcap)[0].float()
    logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.stack([logps, logits.detach().mean(-1)], dim=-1)


class _LinearHeadLogps(torch.autograd.Function):
    """log_softmax(cap(hidden @ weight.T))[target] per token, without the [tokens, vocab] logits.

    The output head's gradient written out. Forward runs over chunks of `chunk_size` tokens and
    keeps the picked log-probs and each token's log-normalizer. Backward recomputes the logits in
    blocks of the vocabulary (the same number of logits per block as a forward chunk), turns each
    block in place into upstream * (onehot(target) - softmax), times the soft-cap's derivative
    1 - tanh^2, and writes that block's rows of the weight gradient in one matmul over all tokens:
    nothing of the weight's size is summed or converted more than once. Matmuls run in the autocast
    dtype when autocast is on (the weight cast once per pass), the softmax in fp32.

    A second output, not differentiated, holds each token's mean logit.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, softcap, chunk_size):
        dtype = compute_dtype(weight)
        cast = weight.to(dtype)
        ctx.hidden_dtype, ctx.weight_dtype, ctx.softcap, ctx.chunk_size = hidden.dtype, weight.dtype, softcap, chunk_size
        hidden = hidden.to(dtype)
        logps = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        normalizers, mean_logits = torch.empty_like(logps), torch.empty_like(logps)
        # Without a cap, sum_v (h . w_v) = h . (sum_v w_v): one matrix-vector product.
        mean_weight = None if softcap else cast.float().mean(0)
        for start in range(0, hidden.shape[0], chunk_size):
            part = slice(start, start + chunk_size)
            logits = _capped_logits(hidden[part], cast, softcap)[0]
            picked = targets[part].unsqueeze(-1)
            logps[part] = torch.log_softmax(logits, dim=-1).gather(-1, picked).squeeze(-1)
            normalizers[part] = logits.gather(-1, picked).squeeze(-1) - logps[part]
            mean_logits[part] = logits.mean(-1) if mean_weight is None else hidden[part].float() @ mean_weight
        ctx.save_for_backward(hidden, cast, targets, normalizers)
        ctx.mark_non_differentiable(mean_logits)
        return logps, mean_logits

    @staticmethod
    def backward(ctx, grad_logps, _grad_mean_logits):
        hidden, cast, targets, normalizers = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        tokens, vocab = hidden.shape[0], cast.shape[0]
        block = max(1, ctx.chunk_size * vocab // max(tokens, 1))
        upstream = grad_logps.float()
        grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device) if need_hidden else None
        grad_weight = torch.empty(cast.shape, dtype=ctx.weight_dtype, device=cast.device) if need_weight else None
        rows = torch.arange(tokens, device=hidden.device)
        for low in range(0, vocab, block):
            weight = cast[low : low + block]
            logits, tanh = _capped_logits(hidden, weight, ctx.softcap)
            grad = logits.sub_(normalizers.unsqueeze(-1)).exp_().mul_(-upstream.unsqueeze(-1))  # -upstream * softmax
            inside = (targets >= low) & (targets < low + weight.shape[0])
            grad[rows[inside], targets[inside] - low] += upstream[inside]
            if tanh is not None:
                grad.mul_(1 - tanh * tanh)
            grad = grad.to(cast.dtype)
            if need_hidden:
                grad_hidden += grad @ weight
            if need_weight:
                grad_weight[low : low + block] = grad.t() @ hidden
        return None if grad_hidden is None else grad_hidden.to(ctx.hidden_dtype), grad_weight, None, None, None


def _capped_logits(hidden, weight, softcap):
    """fp32 logits of a chunk, soft-capped when the model caps them, and the tanh for the gradient."""
    return _softcap((hidden @ weight.t()).float(), softcap)


def _softcap(logits, softcap):
    """Gemma-2's final logit soft-cap, `softcap * tanh(logits / softcap)`, and the tanh (None: no cap)."""
    if not softcap:
        return logits, None
    tanh = torch.tanh(logits / softcap)
    return tanh * softcap, tanh


def _plain_linear(head) -> bool:
    """A bias-free nn.Linear with an ordinary weight (not sharded by DeepSpeed ZeRO-3 or FSDP)."""
    return (type(head) is torch.nn.Linear and head.bias is None and type(head.weight) is torch.nn.Parameter
            and not hasattr(head.weight, "ds_id"))


def _zero3_linear(head) -> bool:
    """A bias-free nn.Linear whose weight DeepSpeed ZeRO-3 partitions."""
    return type(head) is torch.nn.Linear and head.bias is None and hasattr(head.weight, "ds_id")


def _as_head_forward(head, hidden, targets, softcap, chunk_size):
    """`_LinearHeadLogps` on a ZeRO-3 head, run as the head module's forward for one call: DeepSpeed's
    hooks on the module gather its weight before the forward and again before the backward pass, and
    release it after each (after its gradient is accumulated), as for any linear layer."""
    own = head.__dict__.get("forward")
    head.forward = lambda hidden, targets: _LinearHeadLogps.apply(hidden, head.weight, targets, softcap, chunk_size)
    try:
        return head(hidden, targets)
    finally:
        if own is None:
            del head.forward
        else:
            head.forward = own


def head_module_logps(head, softcap, hidden: torch.Tensor, targets: torch.Tensor, chunk_size: int):
    """Each token's log-prob and mean logit through the head module called on chunks of `chunk_size`
    tokens, each chunk checkpointed (recomputed in its backward pass): autograd through any module."""
    return torch.cat([
        checkpoint(_chunk_logps, head, softcap, hidden[i : i + chunk_size], targets[i : i + chunk_size], use_reentrant=False)
        for i in range(0, hidden.shape[0], chunk_size)
    ]).unbind(-1)


def response_logps(model, batch: dict[str, torch.Tensor], chunk_size: int = 0, base_model=None) -> ResponseLogps:
    """Per sequence: the sum of log pi(y_t | ...) over its response tokens, their count, and the sum
    of their mean logits.

    `model` is called for the forward (it may be wrapped by DDP/DeepSpeed); `base_model`, the
    unwrapped model, supplies the output head and the soft-cap when chunking.
    """
    index, targets, sequence = batch["logit_index"], batch["target_ids"], batch["target_sequence"]
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "position_ids") if key in batch}
    rows, width = batch["input_ids"].shape
    keep = torch.zeros(rows * width, dtype=torch.bool, device=index.device)
    if chunk_size > 0:
        base_model = base_model if base_model is not None else model
        output = model(**inputs, logits_to_keep=keep.view(rows, width), output_hidden_states=True, use_cache=False)
        hidden = output.hidden_states[-1].flatten(0, 1)[index]  # the final (normed) hidden states that predict
        head = base_model.get_output_embeddings()
        softcap = getattr(base_model.config, "final_logit_softcapping", None)
        if _plain_linear(head):
            token_logps, mean_logits = _LinearHeadLogps.apply(hidden, head.weight, targets, softcap, chunk_size)
        elif _zero3_linear(head):
            token_logps, mean_logits = _as_head_forward(head, hidden, targets, softcap, chunk_size)
        else:  # another head module (LoRA-wrapped, or sharded in a unit of its own): autograd through the module
            token_logps, mean_logits = head_module_logps(head, softcap, hidden, targets, chunk_size)
    else:
        keep[index] = True
        logits = model(**inputs, logits_to_keep=keep.view(rows, width), use_cache=False).logits  # [kept positions, vocab]
        rank = keep.cumsum(0) - 1  # a kept position's row in `logits` (a shared prompt's last token is scored twice)
        token_logps = torch.log_softmax(logits.float(), dim=-1)[rank[index], targets]
        mean_logits = logits.detach().float().mean(-1)[rank[index]]
    count = int(sequence.max()) + 1

    def per_sequence(values):
        return torch.zeros(count, dtype=values.dtype, device=values.device).index_add(0, sequence, values)

    return ResponseLogps(per_sequence(token_logps), torch.bincount(sequence, minlength=count), per_sequence(mean_logits))
