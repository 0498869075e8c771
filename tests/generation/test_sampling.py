"""The sampler draws exactly from transformers' temperature + top-p distribution: for a given
uniform number per row it picks the token that inverse-CDF sampling over transformers' warped
distribution picks, on both of its paths (candidates above the floor, and the full sort)."""

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from simpo.generation.sampling import Sampler


def reference_draw(scores: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse CDF over transformers' warped distribution, tokens in descending probability (in
    vocabulary order without top-p)."""
    probs = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, scores)).softmax(-1).double()
    if top_p < 1:
        values, ids = probs.sort(dim=-1, descending=True, stable=True)
    else:
        values, ids = probs, torch.arange(probs.shape[-1]).expand_as(probs)
    cumulative = values.cumsum(-1)
    picks = (cumulative <= (uniforms * cumulative[:, -1]).unsqueeze(1)).sum(-1).clamp(max=scores.shape[-1] - 1)
    return ids.gather(1, picks.unsqueeze(1)).squeeze(1)


@pytest.fixture
def scores():
    generator = torch.Generator().manual_seed(0)
    peaked = torch.randn(6, 20000, generator=generator) * 6  # nucleus among a few candidates above the floor
    flat = torch.randn(4, 20000, generator=generator) * 0.1  # every token below the floor (1e-4): the full-sort path
    return torch.cat([peaked, flat])


def test_top_p_draws_equal_inverse_cdf_over_transformers_warped_distribution(scores):
    sampler = Sampler(0.8, 0.95)
    generator = torch.Generator().manual_seed(1)
    for _ in range(100):
        uniforms = torch.rand(len(scores), generator=generator, dtype=torch.float64)
        assert torch.equal(sampler.choose(scores, uniforms), reference_draw(scores, 0.8, 0.95, uniforms))
    probs = (scores / 0.8).softmax(-1)
    _, short = sampler._candidates(probs, torch.zeros(len(scores), dtype=torch.float64))
    assert short.tolist() == [False] * 6 + [True] * 4  # both paths were taken


def test_without_top_p_every_token_can_be_drawn_in_proportion(scores):
    uniforms = torch.linspace(0, 0.999, len(scores), dtype=torch.float64)
    assert torch.equal(Sampler(0.7, 1.0).choose(scores, uniforms), reference_draw(scores, 0.7, 1.0, uniforms))
    assert torch.equal(Sampler(0.0, 1.0).choose(scores, None), scores.argmax(-1))


def test_draw_frequencies_match_the_nucleus_probabilities():
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.0, -1.0, -3.0]])
    warped = TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(0.8)(None, logits)).softmax(-1)[0]
    uniforms = torch.rand(20000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    tokens = Sampler(0.8, 0.9).choose(logits.expand(20000, -1), uniforms)
    frequencies = torch.bincount(tokens, minlength=6) / 20000
    assert warped[-1] == 0 and frequencies[-1] == 0  # outside the nucleus: never drawn
    torch.testing.assert_close(frequencies, warped, atol=0.015, rtol=0)
