"""Log-probabilities of response tokens without the full [batch, tokens, vocab] logits.

Only positions whose next token is a response token are projected onto the vocabulary. With
`chunk_size > 0` the model body runs to its final hidden states (its own head sees no position),
and the head, the final logit soft-cap (Gemma-2), the log-softmax and the gather run over chunks of
`chunk_size` tokens, recomputed in the backward pass (for a plain linear head by `_LinearHeadLogps`,
whose gradient is written out; for any other head module by checkpointing it): the extra memory is
about one chunk times the vocabulary instead of every response token times the vocabulary. With
`chunk_size == 0` the model's own head projects the response positions (`logits_to_keep` with a
boolean mask).

Batches come in any layout of `data.collate` (padded, packed, shared prompt); each names the
positions to score (`logit_index`, flat over rows x width), their targets and their sequences.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from .blocked_attention import compute_dtype


def _chunk_logps(head, softcap: float | None, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = _softcap(head(hidden), softcap)[0]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


class _LinearHeadLogps(torch.autograd.Function):
    """log_softmax(cap(hidden @ weight.T))[target] per token, without the [tokens, vocab] logits.

    The output head's gradient written out. Forward runs over chunks of `chunk_size` tokens and
    keeps the picked log-probs, the picked logits and each token's log-normalizer. The gradient of
    logp_t with respect to the logits is onehot(t) - softmax, times the soft-cap's derivative
    1 - tanh^2. Backward recomputes the softmax in blocks of the vocabulary (as many logits per
    block as a forward chunk) and writes that block's rows of the weight gradient in one matmul over
    all tokens, the upstream gradient folded into the hidden states beforehand and into the hidden
    gradient afterwards (a [tokens, dim] scaling, not one of [tokens, vocab]); the one-hot part is
    a gather and an index_add of one row per token. Nothing of the weight's size is summed or
    converted more than once. Matmuls run in the autocast dtype when autocast is on (the weight
    cast once per pass); the log-softmax and the softmax run in fp32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, softcap, chunk_size):
        dtype = compute_dtype(weight)
        cast = weight.to(dtype)
        ctx.hidden_dtype, ctx.weight_dtype, ctx.softcap, ctx.chunk_size = hidden.dtype, weight.dtype, softcap, chunk_size
        hidden = hidden.to(dtype)
        logps = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        picked_logits = torch.empty_like(logps)
        for start in range(0, hidden.shape[0], chunk_size):
            chunk = slice(start, start + chunk_size)
            logits = _capped_logits(hidden[chunk], cast, softcap)[0]
            picked = targets[chunk].unsqueeze(-1)
            logps[chunk] = torch.log_softmax(logits, dim=-1, dtype=torch.float32).gather(-1, picked).squeeze(-1)
            picked_logits[chunk] = logits.gather(-1, picked).squeeze(-1)
        ctx.save_for_backward(hidden, cast, targets, picked_logits - logps, picked_logits)
        return logps

    @staticmethod
    def backward(ctx, grad_logps):
        hidden, cast, targets, normalizers, picked_logits = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        tokens, vocab = hidden.shape[0], cast.shape[0]
        block = max(1, ctx.chunk_size * vocab // max(tokens, 1))
        upstream = grad_logps.float().unsqueeze(-1)
        # The one-hot part's weight per token: upstream, times 1 - tanh^2 at the target under a cap.
        target_slope = upstream if not ctx.softcap else upstream * (1 - (picked_logits.unsqueeze(-1) / ctx.softcap) ** 2)
        softmax_weight = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device) if need_hidden else None
        scaled_hidden = (hidden * -upstream).to(cast.dtype) if need_weight else None
        grad_weight = torch.empty(cast.shape, dtype=ctx.weight_dtype, device=cast.device) if need_weight else None
        for low in range(0, vocab, block):
            weight = cast[low : low + block]
            logits, tanh = _capped_logits(hidden, weight, ctx.softcap)
            probs = torch.sub(logits, normalizers.unsqueeze(-1)).exp_()  # fp32 softmax of the block
            if tanh is not None:
                probs.mul_(tanh.square_().neg_().add_(1))
            probs = probs.to(cast.dtype)
            if need_hidden:
                softmax_weight += probs @ weight
            if need_weight:
                grad_weight[low : low + block] = probs.t() @ scaled_hidden
        grad_hidden = None
        if need_hidden:
            grad_hidden = (softmax_weight.mul_(-upstream) + target_slope * cast[targets].float()).to(ctx.hidden_dtype)
        if need_weight:
            grad_weight.index_add_(0, targets, (target_slope * hidden.float()).to(grad_weight.dtype))
        return grad_hidden, grad_weight, None, None, None


def _capped_logits(hidden, weight, softcap):
    """A chunk's logits (fp32 when soft-capped), and the tanh for the gradient (None: no cap)."""
    return _softcap(hidden @ weight.t(), softcap)


def _softcap(logits, softcap):
    """Gemma-2's final logit soft-cap, `softcap * tanh(logits / softcap)` in fp32, and the tanh (None: no cap)."""
    if not softcap:
        return logits, None
    tanh = torch.tanh(logits.float() / softcap)
    return tanh * softcap, tanh


def _plain_linear(head) -> bool:
    """A bias-free nn.Linear with an ordinary weight (not sharded by DeepSpeed ZeRO-3 or FSDP)."""
    return (type(head) is torch.nn.Linear and head.bias is None and type(head.weight) is torch.nn.Parameter
            and not hasattr(head.weight, "ds_id"))


def response_logps(model, batch: dict[str, torch.Tensor], chunk_size: int = 0, base_model=None):
    """Per sequence: the sum of log pi(y_t | ...) over its response tokens, and their count.

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
            token_logps = _LinearHeadLogps.apply(hidden, head.weight, targets, softcap, chunk_size)
        else:  # another head module (a LoRA-wrapped or sharded head): autograd through the module
            token_logps = torch.cat([
                checkpoint(_chunk_logps, head, softcap, hidden[i : i + chunk_size], targets[i : i + chunk_size], use_reentrant=False)
                for i in range(0, hidden.shape[0], chunk_size)
            ])
    else:
        keep[index] = True
        logits = model(**inputs, logits_to_keep=keep.view(rows, width), use_cache=False).logits  # [kept positions, vocab]
        rank = keep.cumsum(0) - 1  # a kept position's row in `logits` (a shared prompt's last token is scored twice)
        token_logps = torch.log_softmax(logits.float(), dim=-1)[rank[index], targets]
    count = int(sequence.max()) + 1
    sums = torch.zeros(count, dtype=token_logps.dtype, device=token_logps.device).index_add(0, sequence, token_logps)
    return sums, torch.bincount(sequence, minlength=count)
