"""`blocked_attention` equals attention written out from its formula, values and gradients."""

import pytest
import torch

from simpo.ops.blocked_attention import BLOCK, blocked_attention


def written_out(query, key, value, scaling, softcap, window):
    """softmax(cap(scaling * q k^T) + mask) v for one sequence whose queries are its last rows; the
    mask hides key j from the query at position i unless i - window < j <= i."""
    heads, q_len, _ = query.shape
    kv_heads, k_len, _ = key.shape
    key, value = key.repeat_interleave(heads // kv_heads, 0), value.repeat_interleave(heads // kv_heads, 0)
    scores = scaling * query @ key.transpose(1, 2)
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    position = torch.arange(k_len - q_len, k_len)[:, None]
    seen = torch.arange(k_len)[None, :] <= position
    if window:
        seen &= torch.arange(k_len)[None, :] > position - window
    return torch.softmax(scores.masked_fill(~seen, float("-inf")), dim=-1) @ value


# A packed row: a sequence of 2 blocks and 3 tokens; then a pair whose prompt (300 tokens) is shared
# by a first response of 260 and a second of 40; then a sequence of one token.
PROMPT, FIRST, SECOND = 300, 260, 40
SINGLE = 2 * BLOCK + 3
TOKENS = SINGLE + PROMPT + FIRST + SECOND + 1
PAIR = SINGLE
SEQUENCES = [
    ((0, SINGLE), [(0, SINGLE)]),
    ((PAIR, PAIR + PROMPT + FIRST), [(PAIR, PAIR + PROMPT + FIRST)]),
    ((PAIR + PROMPT + FIRST, TOKENS - 1), [(PAIR, PAIR + PROMPT), (PAIR + PROMPT + FIRST, TOKENS - 1)]),
    ((TOKENS - 1, TOKENS), [(TOKENS - 1, TOKENS)]),
]


@pytest.mark.parametrize("heads,kv_heads", [(6, 2), (3, 3)])
@pytest.mark.parametrize("softcap", [None, 20.0])
@pytest.mark.parametrize("window", [None, 100, 290])
def test_packed_row_equals_each_sequence_written_out(heads, kv_heads, softcap, window):
    torch.manual_seed(0)
    query = torch.randn(heads, TOKENS, 16, dtype=torch.float64, requires_grad=True)
    key = torch.randn(kv_heads, TOKENS, 16, dtype=torch.float64, requires_grad=True)
    value = torch.randn(kv_heads, TOKENS, 16, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(heads, TOKENS, 16, dtype=torch.float64)
    scaling = 0.7

    out = blocked_attention(query, key, value, SEQUENCES, scaling, softcap, window)
    got = [out, *torch.autograd.grad(out, (query, key, value), upstream)]

    pieces = []
    for (first, end), segments in SEQUENCES:
        rows = torch.cat([torch.arange(a, b) for a, b in segments])
        pieces.append(written_out(query[:, first:end], key[:, rows], value[:, rows], scaling, softcap, window))
    expected = torch.cat(pieces, dim=1)
    want = [expected, *torch.autograd.grad(expected, (query, key, value), upstream)]
    for name, a, b in zip(("out", "query", "key", "value"), got, want):
        assert a.dtype == torch.float64
        assert (a - b).abs().max() <= 1e-12 * b.abs().max(), name


def test_bf16_autocast_matches_fp32_to_bf16_precision():
    """Under bf16 autocast the matmuls run in bf16 (q, k, v in fp32 come out and go back as fp32
    gradients): within bf16's precision of the fp32 result, as torch's SDPA is."""
    torch.manual_seed(1)
    tensors = [torch.randn(h, TOKENS, 64, requires_grad=True) for h in (9, 3, 3)]
    upstream = torch.randn(9, TOKENS, 64)

    def run(autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = blocked_attention(*tensors, SEQUENCES, 64**-0.5)
        return [out, *torch.autograd.grad(out, tensors, upstream.to(out.dtype))]

    exact, low = run(False), run(True)
    assert low[0].dtype == torch.bfloat16 and all(g.dtype == torch.float32 for g in low[1:])
    for name, a, b in zip(("out", "query", "key", "value"), [low[0].float(), *low[1:]], exact):
        assert (a - b).abs().max() <= 3e-2 * b.abs().max(), name
        assert (a - b).abs().max() > 0, name  # (and it did run in bf16)
