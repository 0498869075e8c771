"""A KV cache whose full-attention layers grow in place, for long answers on the CPU.

transformers' `DynamicLayer` appends each step's keys and values with `torch.cat`, copying the
whole cache every step: at batch 16 and 800 cached tokens, SmolLM2's 30 layers copy ~0.6 GB per
token, more than half the step. `GrowingLayer` keeps a buffer with room to spare (its capacity
doubles when full), writes each step into it and hands attention views of the filled part, so a
step copies only the new token's keys and values. Sliding-window layers (Gemma-2's) are bounded by
their window and stay as transformers builds them.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.length = 0
        self.key_buffer = self.value_buffer = None

    def _reserve(self, needed: int, like_keys: torch.Tensor, like_values: torch.Tensor) -> None:
        capacity = 0 if self.key_buffer is None else self.key_buffer.shape[-2]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 256)
        keys = like_keys.new_empty((*like_keys.shape[:-2], capacity, like_keys.shape[-1]))
        values = like_values.new_empty((*like_values.shape[:-2], capacity, like_values.shape[-1]))
        if self.length:
            keys[..., : self.length, :] = self.key_buffer[..., : self.length, :]
            values[..., : self.length, :] = self.value_buffer[..., : self.length, :]
        self.key_buffer, self.value_buffer = keys, values

    def _expose(self) -> None:
        self.keys = self.key_buffer[..., : self.length, :]
        self.values = self.value_buffer[..., : self.length, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        self._reserve(self.length + new, key_states, value_states)
        self.key_buffer[..., self.length : self.length + new, :] = key_states
        self.value_buffer[..., self.length : self.length + new, :] = value_states
        self.length += new
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0:
            self.key_buffer = self.key_buffer[indices, ...]
            self.value_buffer = self.value_buffer[indices, ...]
            self._expose()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0 and self.get_seq_length() > 0:
            self.length = max(0, self.length + tokens_to_remove)
            self._expose()
        elif tokens_to_remove > 0:
            super().crop(tokens_to_remove)

    def reset(self) -> None:
        self.key_buffer = self.value_buffer = None
        self.length = 0
        super().reset()


def growing_cache(config) -> DynamicCache:
    """transformers' cache for `config`, its full-attention layers replaced by `GrowingLayer`s."""
    cache = DynamicCache(config=config)
    if cache.layers:
        cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    else:  # a config without layer types: transformers adds layers of one class as they are needed
        cache.layer_class_to_replicate = GrowingLayer
    return cache
