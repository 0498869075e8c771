"""Nucleus sampling keeps exactly the tokens transformers' temperature + top-p warpers keep."""

import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from simpo.generation.sampling import NucleusSampling


def test_nucleus_sampling_keeps_what_transformers_top_p_keeps():
    torch.manual_seed(0)
    peaked = torch.randn(6, 5000) * 6  # nucleus inside the top 256 tokens
    flat = torch.randn(4, 5000) * 0.1  # nucleus of thousands of tokens: the full-sort path
    scores = torch.cat([peaked, flat])
    ours = NucleusSampling(0.8, 0.95)(None, scores)
    reference = TopPLogitsWarper(0.95)(None, TemperatureLogitsWarper(0.8)(None, scores))
    assert torch.equal(torch.isinf(ours), torch.isinf(reference))
    kept = ~torch.isinf(reference)
    assert torch.allclose(ours[kept], reference[kept])
    assert kept[:6].sum(-1).max() < 256 < kept[6:].sum(-1).min()  # both paths were taken
