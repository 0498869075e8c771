"""Attention of one new token per row against the KV cache, for decoding on the CPU.

A decode step asks attention for a single query per row. torch's CPU SDPA kernels are built for
long query blocks: with one query and a padding mask, the bf16 flash kernel took 21 ms a layer at
240 rows and 120 cached tokens (fp32: 6 ms), 0.6 s of a step over SmolLM2's 30 layers. Written as
two batched matmuls over the grouped heads, with each group's queries against its shared keys
(no repeated key/value copies), it took 3.6 ms (docs/benchmarks.md). Scaling, soft-capping and the
mask (padding, sliding window) are the model's own; calls with more than one query (the prefill)
go to the model's attention function unchanged.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from .attention import model_attention

PREFIX = "simpo_decode_"


def decode_attention(query, key, value, mask, scaling: float, softcap: float | None = None) -> torch.Tensor:
    """softmax(cap(scaling * q k^T) + mask) v for `query` [rows, heads, 1, dim] against `key`/`value`
    [rows, kv_heads, length, dim] (heads a multiple of kv_heads); `mask` [rows, 1, 1, length] of
    booleans (True: attend) or additive floats, or None. Returns [rows, 1, heads, dim].

    Keys and values that are views of a longer buffer (`.whole`, see `generation.kv_cache`) are
    read whole, the columns past `length` masked: a strided view would be copied by every matmul."""
    rows, heads, _, dim = query.shape
    length = key.shape[-2]
    key, value = getattr(key, "whole", key), getattr(value, "whole", value)
    groups = heads // key.shape[1]
    scores = torch.matmul(query.reshape(rows, key.shape[1], groups, dim), key.transpose(-1, -2)).float() * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if mask is not None:
        mask = mask[:, :, :, :length]
        live = scores[..., :length]
        live.masked_fill_(~mask, float("-inf")) if mask.dtype == torch.bool else live.add_(mask)
    scores[..., length:] = float("-inf")
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)  # [rows, kv_heads, groups, dim]
    return out.reshape(rows, 1, heads, dim)


def _wrapped(name: str):
    def attention(module, query, key, value, attention_mask, **kwargs):
        if query.shape[2] != 1 or query.device.type != "cpu" or kwargs.get("s_aux") is not None:
            return model_attention(module, name)(module, query, key, value, attention_mask, **kwargs)
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        return decode_attention(query, key, value, attention_mask, scaling, kwargs.get("softcap")), None

    return attention


def use_decode_attention(model) -> None:
    """Route the model's single-query attention calls on the CPU to `decode_attention`."""
    name = model.config._attn_implementation
    if name.startswith(PREFIX) or name not in ("eager", "sdpa"):
        return
    wrapped = PREFIX + name
    if wrapped not in AttentionInterface._global_mapping:
        AttentionInterface.register(wrapped, _wrapped(name))
        ALL_MASK_ATTENTION_FUNCTIONS.register(wrapped, ALL_MASK_ATTENTION_FUNCTIONS[name])
    model.set_attn_implementation(wrapped)
