"""Causal attention of the sequences of a packed row, in blocks of queries, recomputed in backward.

    out = softmax(cap(scaling * q k^T) + mask) v,   cap(s) = softcap * tanh(s / softcap) (Gemma-2)

per sequence, with the causal mask and, where a model has one, the sliding window (key j is seen by
the query at position i when i - window < j <= i, as transformers masks it). A sequence's queries
may be the last rows of its keys only: a shared prompt's second response, whose keys are the
prompt's and its own.

Why: on the CPU, torch's flash-attention kernel for SDPA runs bf16 training at a small fraction of
the bf16 matmul rate, and eager attention keeps every [heads, L, L] probability matrix for the
backward pass (figures in docs/performance.md). Here each block of queries is two
batched matmuls and one fused softmax, against the keys up to the block's last position only (the
causal half); the backward pass recomputes the block's probabilities instead of storing them, so
the memory kept is that of q, k and v. Grouped query heads share their key-value head without
being repeated: the G query heads of a key-value head are one [G * block, dim] matrix.

Scores and probabilities are in the compute dtype (bf16 under autocast), as transformers' eager
attention has them; the softmax accumulates in fp32.
"""

from __future__ import annotations

from functools import lru_cache

import torch

BLOCK = 256  # queries per block: the fastest of 128, 256 and 512 for sequences of 300 to 1,200 tokens


def blocked_attention(query, key, value, sequences, scaling: float, softcap: float | None = None, window: int | None = None):
    """Attention of every sequence of a packed row, in one autograd node.

    query [heads, tokens, dim]; key, value [kv_heads, tokens, dim]; `sequences`: per sequence,
    ((first, end) of its query rows, [(first, end), ...] of its key rows), the queries being the
    last rows of the keys put together. Returns [heads, tokens, dim] in the compute dtype; the
    gradients of the row's q, k and v are written in place, with no per-sequence slice to undo.
    """
    return _BlockedAttention.apply(query, key, value, sequences, scaling, softcap, window)


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype matmuls run in: autocast's when it is on for the tensor's device, else its own."""
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


def _blocks(q_first: int, q_end: int, k_len: int, window: int | None, dtype: torch.dtype, device: torch.device):
    """Per block of a sequence's queries (rows q_first..q_end of the packed row, the last of its
    k_len keys): (its query rows, their count, its keys within the sequence, mask columns). The mask
    columns are (start, bias) pairs: an additive 0/-inf bias over the block's keys from `start`."""
    offset = k_len - (q_end - q_first)  # the position of the sequence's first query
    for first in range(0, q_end - q_first, BLOCK):
        end = min(first + BLOCK, q_end - q_first)
        rows, key_end = end - first, offset + end
        key_start = 0 if window is None else max(0, offset + first - window + 1)
        masks = [(key_end - rows - key_start, _band(rows, rows, 1, True, dtype, device))]  # causal: key j > position i
        if window is not None and offset + end - 1 - window >= key_start:
            # sliding window: key j <= position i - window, i.e. column - row <= this diagonal
            diagonal = offset + first - window - key_start
            width = min(rows + diagonal, key_end - key_start)
            masks.append((0, _band(rows, width, diagonal, False, dtype, device)))
        yield slice(q_first + first, q_first + end), rows, slice(key_start, key_end), masks


@lru_cache(maxsize=64)
def _band(rows: int, columns: int, diagonal: int, upper: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """-inf above (upper) or on and below (lower) the `diagonal`, 0 elsewhere."""
    full = torch.full((rows, columns), float("-inf"), dtype=dtype, device=device)
    return full.triu(diagonal) if upper else full.tril(diagonal)


def _probs(q_block, k_block, masks, softcap, rows):
    """Softmax probabilities of one block, [kv_heads, groups * rows, keys], and the soft-cap's tanh."""
    scores = torch.bmm(q_block, k_block.transpose(1, 2))
    tanh = None
    if softcap:
        tanh = torch.tanh(scores.to(_accumulate_dtype(scores.dtype)).div_(softcap))
        scores = tanh * softcap
    grid = scores.view(scores.shape[0], -1, rows, scores.shape[-1])  # [kv_heads, groups, rows, keys]
    for start, bias in masks:
        grid[..., start : start + bias.shape[1]] += bias
    return torch.softmax(scores, dim=-1).to(q_block.dtype), tanh


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _mask_dtype(dtype: torch.dtype, softcap: float | None) -> torch.dtype:
    """The scores' dtype, where the masks are added: fp32 (at least) after a soft-cap."""
    return _accumulate_dtype(dtype) if softcap else dtype


def _grouped(tensor: torch.Tensor, rows: slice) -> torch.Tensor:
    """[kv_heads, groups, tokens, dim] rows -> [kv_heads, groups * rows, dim]: a key-value head's query heads as one matrix."""
    return tensor[:, :, rows].reshape(tensor.shape[0], -1, tensor.shape[-1])


def _rows(tensor: torch.Tensor, segments: list[tuple[int, int]]) -> torch.Tensor:
    """A sequence's rows (dim 1): a view of one segment, or the segments put together."""
    if len(segments) == 1:
        return tensor[:, segments[0][0] : segments[0][1]]
    return torch.cat([tensor[:, first:end] for first, end in segments], dim=1)


def _add_rows(total: torch.Tensor, segments: list[tuple[int, int]], part: torch.Tensor) -> None:
    at = 0
    for first, end in segments:
        total[:, first:end] += part[:, at : at + end - first]
        at += end - first


class _BlockedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, sequences, scaling, softcap, window):
        dtype = compute_dtype(query)
        heads, tokens, dim = query.shape
        kv_heads = key.shape[0]
        q = (query.to(dtype) * scaling).view(kv_heads, heads // kv_heads, tokens, dim)
        k, v = key.to(dtype), value.to(dtype)
        out = torch.zeros_like(q)
        for (q_first, q_end), segments in sequences:
            k_seq, v_seq = _rows(k, segments), _rows(v, segments)
            for queries, rows, keys, masks in _blocks(q_first, q_end, k_seq.shape[1], window, _mask_dtype(dtype, softcap), q.device):
                probs, _ = _probs(_grouped(q, queries), k_seq[:, keys], masks, softcap, rows)
                out[:, :, queries] = torch.bmm(probs, v_seq[:, keys]).view(kv_heads, -1, rows, dim)
        ctx.save_for_backward(q, k, v)
        ctx.sequences, ctx.scaling, ctx.softcap, ctx.window = sequences, scaling, softcap, window
        ctx.dtypes = query.dtype, key.dtype, value.dtype
        return out.view(heads, tokens, dim)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v = ctx.saved_tensors
        kv_heads, groups, tokens, dim = q.shape
        grad_out = grad_out.to(q.dtype).view(kv_heads, groups, tokens, dim)
        grad_q = torch.zeros_like(q)
        grad_k = torch.zeros(k.shape, dtype=_accumulate_dtype(k.dtype), device=k.device)
        grad_v = torch.zeros(v.shape, dtype=_accumulate_dtype(v.dtype), device=v.device)
        for (q_first, q_end), segments in ctx.sequences:
            k_seq, v_seq = _rows(k, segments), _rows(v, segments)
            # One segment: its gradient rows are written in place; several: gathered, then added.
            grad_k_seq, grad_v_seq = (_rows(grad_k, segments), _rows(grad_v, segments)) if len(segments) == 1 else (
                torch.zeros(k_seq.shape, dtype=grad_k.dtype, device=k.device), torch.zeros(v_seq.shape, dtype=grad_v.dtype, device=v.device))
            for queries, rows, keys, masks in _blocks(q_first, q_end, k_seq.shape[1], ctx.window, _mask_dtype(q.dtype, ctx.softcap), q.device):
                q_block, g_block = _grouped(q, queries), _grouped(grad_out, queries)
                probs, tanh = _probs(q_block, k_seq[:, keys], masks, ctx.softcap, rows)
                grad_v_seq[:, keys] += torch.bmm(probs.transpose(1, 2), g_block)
                grad_probs = torch.bmm(g_block, v_seq[:, keys].transpose(1, 2))
                grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
                if tanh is not None:
                    grad_scores = (grad_scores.to(tanh.dtype) * (1 - tanh * tanh)).to(q.dtype)
                grad_q[:, :, queries] = torch.bmm(grad_scores, k_seq[:, keys]).view(kv_heads, groups, rows, dim)
                grad_k_seq[:, keys] += torch.bmm(grad_scores.transpose(1, 2), q_block)
            if len(segments) > 1:
                _add_rows(grad_k, segments, grad_k_seq)
                _add_rows(grad_v, segments, grad_v_seq)
        query_dtype, key_dtype, value_dtype = ctx.dtypes
        grad_query = grad_q.mul_(ctx.scaling).view(kv_heads * groups, tokens, dim).to(query_dtype)
        return grad_query, grad_k.to(key_dtype), grad_v.to(value_dtype), None, None, None, None
