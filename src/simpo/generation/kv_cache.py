"""A KV cache whose layers grow in place, for decoding on the CPU.

transformers' `DynamicLayer` appends each step's keys and values with `torch.cat`, copying the
whole cache every step: at batch 16 and 800 cached tokens, SmolLM2's 30 layers copy ~0.6 GB per
token, more than half the step. `GrowingLayer` keeps a zero-filled buffer with room to spare (an
eighth more, at least 16 columns, when it fills; or `spare` columns when it is first made, which
the engine sets to `max_new_tokens` so that a batch never grows), writes each step into it and
hands attention views of the filled part, so a step copies only the new token's keys and values.
A view carries its buffer from the first filled column on as `.whole`: finite past the filled part
(zeros, or what a crop left), which soft-capped single-query attention reads whole
(`ops.decode_attention`).

The continuous-batching engine (`generation.engine`) also places new rows into finished rows'
places (`place`), keeps the first rows with the last unfinished ones moved into finished rows'
places (`keep_rows`: only the moved rows are copied), drops the columns no row needs any more (a
view: `drop_columns`), and rebuilds the buffer around kept and new rows (`splice`).
"""

from __future__ import annotations

import functools

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def room_for(length: int, spare: int | None = None) -> int:
    """Columns to allocate for `length` filled ones: `spare` more, or an eighth more, at least 16."""
    return length + (spare if spare is not None else max(16, length // 8))


class GrowingLayer(DynamicLayer):
    """`spare`: columns to allocate past the filled ones when the buffer is first made (default: an
    eighth more, at least 16), so that a batch that knows how far it decodes never grows."""

    def __init__(self, spare: int | None = None):
        super().__init__()
        self.spare = spare

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.first = self.length = 0  # the filled columns are the buffer's [first, first + length)
        self.key_buffer = self.value_buffer = None

    @property
    def room(self) -> int:
        """Columns free past the filled ones."""
        return self.key_buffer.shape[-2] - self.first - self.length

    def _reserve(self, needed: int, like_keys: torch.Tensor, like_values: torch.Tensor) -> None:
        capacity = 0 if self.key_buffer is None else self.key_buffer.shape[-2] - self.first
        if needed <= capacity:
            return
        capacity = room_for(needed, self.spare if self.key_buffer is None else None)
        keys = like_keys.new_zeros((*like_keys.shape[:-2], capacity, like_keys.shape[-1]))
        values = like_values.new_zeros((*like_values.shape[:-2], capacity, like_values.shape[-1]))
        if self.length:
            keys[..., : self.length, :] = self.keys
            values[..., : self.length, :] = self.values
        self.key_buffer, self.value_buffer, self.first = keys, values, 0

    def _expose(self) -> None:
        filled = slice(self.first, self.first + self.length)
        self.keys, self.values = self.key_buffer[..., filled, :], self.value_buffer[..., filled, :]
        whole = (self.key_buffer, self.value_buffer) if not self.first else (self.key_buffer[..., self.first :, :], self.value_buffer[..., self.first :, :])
        self.keys.whole, self.values.whole = whole  # for `ops.decode_attention`'s soft-capped path

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        self._reserve(self.length + new, key_states, value_states)
        end = self.first + self.length
        self.key_buffer[..., end : end + new, :] = key_states
        self.value_buffer[..., end : end + new, :] = value_states
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

    def place(self, rows: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Overwrite rows `rows` with `keys`/`values` [len(rows), heads, n, dim] in the last n columns;
        their columns before those keep stale entries, which the attention mask hides."""
        end = self.first + self.length
        columns = slice(end - keys.shape[-2], end)
        self.key_buffer[rows, :, columns] = keys
        self.value_buffer[rows, :, columns] = values

    def drop_columns(self, count: int) -> None:
        """Drop the first `count` filled columns: the view moves, nothing is copied."""
        self.first, self.length = self.first + count, self.length - count
        self._expose()

    def keep_rows(self, count: int, sources: torch.Tensor, targets: torch.Tensor) -> None:
        """Keep the first `count` rows, rows `sources` (at or past `count`) moved into rows `targets`
        (before it): only the moved rows are copied; the buffer keeps its storage."""
        if len(sources):
            filled = slice(self.first, self.first + self.length)
            self.key_buffer[targets, :, filled] = self.key_buffer[sources, :, filled]
            self.value_buffer[targets, :, filled] = self.value_buffer[sources, :, filled]
        self.key_buffer, self.value_buffer = self.key_buffer[:count], self.value_buffer[:count]
        self._expose()

    def splice(self, keep: torch.Tensor | None, drop: int, incoming: GrowingLayer | None, width: int) -> None:
        """Rows `keep` (None: all) without their first `drop` columns, then `incoming`'s rows, each set
        against the right edge of `width` columns; the columns left of a row's own are zeros
        (padding, which the attention mask hides)."""
        parts = []
        if keep is None or len(keep):
            rows = slice(None) if keep is None else keep
            parts.append((self.keys[rows, :, drop:], self.values[rows, :, drop:]))
        if incoming is not None:
            parts.append((incoming.keys, incoming.values))
        like = parts[0][0]
        shape = (sum(keys.shape[0] for keys, _ in parts), like.shape[1], room_for(width), like.shape[-1])
        self.key_buffer, self.value_buffer = like.new_zeros(shape), like.new_zeros(shape)
        row = 0
        for keys, values in parts:
            count, length = keys.shape[0], keys.shape[-2]
            self.key_buffer[row : row + count, :, width - length : width] = keys
            self.value_buffer[row : row + count, :, width - length : width] = values
            row += count
        self.first, self.length = 0, width
        self._expose()

    def reset(self) -> None:
        self.key_buffer = self.value_buffer = None
        self.first = self.length = 0
        super().reset()


def growing_cache(config, every_layer: bool = False, spare: int | None = None) -> DynamicCache:
    """transformers' cache for `config`, its full-attention layers (with `every_layer`, its
    sliding-window layers too: they then keep every token, and the sliding-window mask hides the
    old ones) replaced by `GrowingLayer`s with `spare` columns to spare."""
    cache = DynamicCache(config=config)
    if cache.layers:
        cache.layers = [GrowingLayer(spare) if every_layer or type(layer) is DynamicLayer else layer for layer in cache.layers]
    else:  # a config without layer types: transformers adds layers of one class as they are needed
        cache.layer_class_to_replicate = functools.partial(GrowingLayer, spare)
    return cache
