"""Attention for packed rows that spends nothing across sequence boundaries, on any backend.

A packed row holds several sequences back to back, `position_ids` restarting at 0 for each.
transformers already builds a block-diagonal mask from such position ids (and flash-attention reads
them as variable-length sequences), so the eager and SDPA paths are correct as they are; but they
still compute every query against every key of the row, quadratic in the row's length. Wrapping
the model's own attention function, we call it once per sequence with that sequence's slice of
queries, keys, values and mask, so soft-capping, sliding windows and scaling stay the model's own
and the cost is the sum of the squared sequence lengths. On SDPA, a sequence that fits the sliding
window (or a model without one) goes without a mask, as `is_causal`, which skips the masked half.
A pair laid out with a shared prompt (`data.collate`) gets the prompt's keys and values for both
of its responses, and neither response sees the other.

On the CPU, `blocked_attention` computes a sequence instead of the model's function where it is
exact and faster or leaner (see `_blocked`); it takes a shared prompt's second response as queries
against the prompt's keys and its own, without recomputing the prompt's rows.
"""

from __future__ import annotations

import sys

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from .blocked_attention import blocked_attention, compute_dtype

PREFIX = "simpo_packed_"


def model_attention(module, name: str):
    """The model's own attention function of implementation `name`."""
    if name == "eager":  # each model module defines its own eager attention
        return sys.modules[type(module).__module__].eager_attention_forward
    return AttentionInterface._global_mapping[name]


_last_layout: list = [None, None]  # the last row read, held so that its identity is not reused


def _layout(position_ids: torch.Tensor | None) -> list[tuple[int, int | None, int, int]] | None:
    """(start, split, prompt, end) per sequence of a single packed row, or None for an ordinary batch.

    A sequence starts where the position is 0. `split` is where a second response that shares the
    sequence's first `prompt` tokens begins (the position drops back to the prompt's length; see
    `data.collate`); None (and prompt 0) when there is none.
    """
    if position_ids is None or position_ids.shape[0] != 1:
        return None
    if position_ids is _last_layout[0]:  # every layer of a forward reads the same position ids
        return _last_layout[1]
    positions = position_ids[0]
    breaks = [0] + ((positions[1:] - positions[:-1]) != 1).nonzero().flatten().add(1).tolist()
    if len(breaks) == 1:
        return None
    layout = []
    for start, end, first in zip(breaks, breaks[1:] + [positions.shape[0]], positions[breaks].tolist()):
        if first == 0 or not layout:
            layout.append((start, None, 0, end))
        elif first + end - start > start - layout[-1][0]:
            # (the model's own attention functions take the second response's mask from a corner of the first's)
            raise ValueError(f"packed row: the pair at token {layout[-1][0]} has its longer response second; data.collate puts it first")
        else:
            layout[-1] = (layout[-1][0], start, first, end)
    _last_layout[:] = [position_ids, layout]
    return layout


# Models whose eager attention is transformers' standard one (Llama's, or Gemma-2's with the
# soft-cap): softmax(cap(scaling * q k^T) + causal/sliding-window mask) v, which `blocked_attention`
# computes. Other models keep their own eager function, called per sequence.
STANDARD_EAGER = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text"}


def _blocked(module, name: str, query: torch.Tensor, kwargs: dict) -> bool:
    """Whether `blocked_attention` computes this call: on the CPU, for the standard eager attention
    (it keeps no [heads, L, L] matrix), and for SDPA in bf16, where it is faster than torch's CPU
    flash kernel (in fp32 that kernel is the faster one; docs/performance.md)."""
    if query.device.type != "cpu" or kwargs.get("dropout") or kwargs.get("s_aux") is not None:
        return False
    if name == "eager":
        return getattr(getattr(module, "config", None), "model_type", None) in STANDARD_EAGER
    return name == "sdpa" and compute_dtype(query) == torch.bfloat16


def _per_sequence(name: str):
    def attention(module, query, key, value, attention_mask, **kwargs):
        original = model_attention(module, name)
        layout = _layout(kwargs.get("position_ids"))
        if layout is None:
            return original(module, query, key, value, attention_mask, **kwargs)
        window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
        if _blocked(module, name, query, kwargs):
            sequences = []
            for start, split, prompt, end in layout:
                if split is None:
                    sequences.append(((start, end), [(start, end)]))
                else:  # the second response's queries, against the prompt's keys and its own
                    sequences += [((start, split), [(start, split)]), ((split, end), [(start, start + prompt), (split, end)])]
            scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
            out = blocked_attention(query.squeeze(0), key.squeeze(0), value.squeeze(0), sequences, scaling, kwargs.get("softcap"), window)
            return out.transpose(0, 1).unsqueeze(0), None  # [1, tokens, heads, head_dim], no weights

        def run(rows: torch.Tensor | slice, length: int, start: int) -> torch.Tensor:
            # `rows`: a contiguous sequence of `length` tokens, positions 0..length-1; its mask is
            # the packed mask's causal block that starts at `start` (at least `length` long).
            mask = None if attention_mask is None else attention_mask[:, :, start : start + length, start : start + length]
            if name == "sdpa" and (window is None or length <= window):
                mask = None  # plain causal: SDPA's is_causal kernels skip the masked half
            out, _ = original(module, query[:, :, rows], key[:, :, rows], value[:, :, rows], mask, **kwargs)
            return out

        outputs = []
        for start, split, prompt, end in layout:
            if split is None:
                outputs.append(run(slice(start, end), end - start, start))
                continue
            # Prompt and first response as one sequence; then the prompt again with the second
            # response, whose output rows are kept. The second is the shorter, so its causal mask
            # is a corner of the first's block.
            outputs.append(run(slice(start, split), split - start, start))
            second = torch.cat([torch.arange(start, start + prompt), torch.arange(split, end)]).to(query.device)
            outputs.append(run(second, prompt + end - split, start)[:, prompt:])
        return torch.cat(outputs, dim=1), None  # [batch, tokens, heads, head_dim], no weights

    return attention


def use_per_sequence_attention(model) -> bool:
    """Switch a model on eager or SDPA attention to the per-sequence wrapper (flash needs none);
    whether the model now runs it (so that it can take shared-prompt rows)."""
    config = model.config
    name = config._attn_implementation
    if name.startswith(PREFIX):
        return True
    if name not in ("eager", "sdpa"):
        return False
    wrapped = PREFIX + name
    if name == "sdpa" and torch.cuda.is_available():
        # cuDNN's SDPA builds an execution plan for every new sequence length, and per-sequence
        # calls meet several new lengths a step, which makes packed steps several times slower;
        # the flash and memory-efficient kernels remain.
        torch.backends.cuda.enable_cudnn_sdp(False)
    if wrapped not in AttentionInterface._global_mapping:
        AttentionInterface.register(wrapped, _per_sequence(name))
        ALL_MASK_ATTENTION_FUNCTIONS.register(wrapped, ALL_MASK_ATTENTION_FUNCTIONS[name])
    model.set_attn_implementation(wrapped)
    return True
