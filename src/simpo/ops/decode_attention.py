"""Attention of one new token per row against the KV cache, for decoding on the CPU.

A decode step asks attention for a single query per row. transformers' SDPA path repeats each
key/value head for its group of query heads when there is a mask (on the CPU there always is:
padding), copying the cache three times over for SmolLM2, every layer and step. Here torch's SDPA
is called with `enable_gqa`, on the cache's own views: its CPU flash kernel reads each key and
value once, from the filled columns only, in place, and keeps the probabilities in fp32 (4x closer
to an fp64 reference than a bf16 softmax-then-matmul). Against the path before (two batched
matmuls over the grouped heads, over the growing cache's whole buffer), bf16 on an Intel Xeon with
AMX: a layer took 0.64x the time at 64 rows and 600 cached tokens, 0.54x at 256 rows and 400, and a
whole decode step of SmolLM2 0.80x at 40 rows and 336 (docs/benchmarks.md).

With a soft-cap (Gemma-2), which SDPA cannot apply, attention is the two matmuls over the grouped
heads, reading the whole buffer (`.whole`, see `generation.kv_cache`) so that no matmul copies a
strided view. Scaling, soft-capping and the mask (padding, sliding window) are the model's own;
calls with more than one query (the prefill) go to the model's attention function unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from .attention import model_attention

PREFIX = "simpo_decode_"


def decode_attention(query, key, value, mask, scaling: float, softcap: float | None = None) -> torch.Tensor:
    """softmax(cap(scaling * q k^T) + mask) v for `query` [rows, heads, 1, dim] against `key`/`value`
    [rows, kv_heads, length, dim] (heads a multiple of kv_heads); `mask` [rows, 1, 1, length] of
    booleans (True: attend) or additive floats, or None. Returns [rows, 1, heads, dim].

    Without `softcap`, torch's SDPA on `key`/`value` as they are. With it, keys and values that are
    views of a longer buffer (`.whole`) are read whole, the columns past `length` masked: a strided
    view would be copied by every matmul."""
    rows, heads, _, dim = query.shape
    length = key.shape[-2]
    if mask is not None:
        mask = mask[:, :, :, :length]
    if softcap is None:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling, enable_gqa=True).transpose(1, 2)
    key, value = getattr(key, "whole", key), getattr(value, "whole", value)
    groups = heads // key.shape[1]
    scores = torch.matmul(query.reshape(rows, key.shape[1], groups, dim), key.transpose(-1, -2)).float() * scaling
    scores = torch.tanh(scores / softcap) * softcap
    if mask is not None:
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
