"""Single-query attention against the cache equals the models' eager attention (grouped heads,
soft-capping, boolean and additive masks), and reading a growing cache's whole buffer changes
nothing."""

import pytest
import torch

from simpo.generation.kv_cache import GrowingLayer
from simpo.ops.decode_attention import decode_attention


def eager(query, key, value, allowed, scaling, softcap):
    """Written out: heads repeated per group, softmax(cap(scaling q k^T) masked) v."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    scores = query @ key.transpose(-1, -2) * scaling
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    scores = scores.masked_fill(~allowed[:, None, None, :], float("-inf"))
    return (scores.softmax(-1) @ value).transpose(1, 2)  # [rows, 1, heads, dim]


@pytest.mark.parametrize("softcap", [None, 50.0])
@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_decode_attention_equals_eager_attention_on_a_growing_cache(softcap, mask_kind):
    generator = torch.Generator().manual_seed(0)
    layer = GrowingLayer()
    keys, values = torch.randn(5, 2, 13, 8, generator=generator), torch.randn(5, 2, 13, 8, generator=generator)
    layer.update(keys, values)
    assert layer.key_buffer.shape[-2] > 13 and layer.keys.whole is layer.key_buffer  # a view of a longer buffer
    query = torch.randn(5, 6, 1, 8, generator=generator)
    allowed = torch.arange(13) >= torch.tensor([0, 3, 7, 12, 0]).unsqueeze(1)  # left padding, row by row
    mask = allowed[:, None, None, :]
    if mask_kind == "additive":
        mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    ours = decode_attention(query, layer.keys, layer.values, mask, 0.3, softcap)
    torch.testing.assert_close(ours, eager(query, keys, values, allowed, 0.3, softcap), rtol=1e-5, atol=1e-6)
