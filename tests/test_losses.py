"""The SimPO loss against its formula, written out here element by element with math."""

import math

import pytest
import torch

from simpo.losses import simpo_loss


def logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


CASES = [(-0.8, -1.3), (-1.1, -0.9), (-2.0, -2.0), (-0.05, -40.0), (-40.0, -0.05)]


@pytest.mark.parametrize("beta,ratio,smoothing", [(2.5, 0.55, 0.0), (10.0, 0.5, 0.0), (2.0, 0.3, 0.2)])
def test_sigmoid_matches_formula(beta, ratio, smoothing):
    chosen = torch.tensor([c for c, _ in CASES], dtype=torch.float64)
    rejected = torch.tensor([r for _, r in CASES], dtype=torch.float64)
    got = simpo_loss(chosen, rejected, beta, ratio, "sigmoid", smoothing)
    gamma = beta * ratio
    for value, (a_w, a_l) in zip(got.tolist(), CASES):
        z = beta * (a_w - a_l) - gamma
        expected = -(1 - smoothing) * logsigmoid(z) - smoothing * logsigmoid(-z)
        assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_hinge_matches_formula():
    beta, ratio = 2.5, 0.4
    chosen = torch.tensor([c for c, _ in CASES], dtype=torch.float64)
    rejected = torch.tensor([r for _, r in CASES], dtype=torch.float64)
    got = simpo_loss(chosen, rejected, beta, ratio, "hinge")
    gamma = beta * ratio
    expected = [max(0.0, 1 - beta * (a_w - a_l - gamma / beta)) for a_w, a_l in CASES]
    assert got.tolist() == pytest.approx(expected, abs=1e-12)


def test_sigmoid_gradient_matches_derivative():
    # d/dA_w of -logsigmoid(z) with z = beta*(A_w - A_l) - gamma is -beta * sigmoid(-z).
    beta, ratio = 10.0, 0.5
    chosen = torch.tensor([-0.7], dtype=torch.float64, requires_grad=True)
    rejected = torch.tensor([-0.9], dtype=torch.float64, requires_grad=True)
    simpo_loss(chosen, rejected, beta, ratio).sum().backward()
    z = beta * (-0.7 + 0.9) - beta * ratio
    expected = -beta / (1 + math.exp(z))
    assert chosen.grad.item() == pytest.approx(expected, rel=1e-12)
    assert rejected.grad.item() == pytest.approx(-expected, rel=1e-12)


def test_large_margins_stay_finite():
    chosen = torch.tensor([0.0, -1e4], dtype=torch.float32)
    rejected = torch.tensor([-1e4, 0.0], dtype=torch.float32)
    loss = simpo_loss(chosen, rejected, 10.0, 0.5)
    assert torch.isfinite(loss).all()
    assert loss[0].item() == 0.0
    assert loss[1].item() == pytest.approx(10.0 * 1e4 + 5.0, rel=1e-6)


def test_unknown_loss_type_raises():
    with pytest.raises(ValueError, match="unknown SimPO loss_type 'ipo'"):
        simpo_loss(torch.zeros(1), torch.zeros(1), 1.0, 0.0, "ipo")
