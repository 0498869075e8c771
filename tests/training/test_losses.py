"""The SimPO loss against its formula, written out here element by element with math."""

import math

import pytest
import torch

from simpo.training.losses import simpo_loss


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


# ---- The paper's baselines: each against its formula written out here in float64 with math. ----
from types import SimpleNamespace  # noqa: E402

from simpo.training.losses import (  # noqa: E402
    LOSSES,  # noqa: E402
    PairLogps,
    cpo_loss,
    dpo_loss,
    ipo_loss,
    kto_pair_loss,
    orpo_loss,
    preference_loss,
    rdpo_loss,
    rrhf_loss,
    slic_hf_loss,
)


def loss_args(loss_type: str) -> SimpleNamespace:
    """What `SimPOConfig` holds for a loss: its own keys at their defaults, the others None."""
    every = {key: None for loss in LOSSES.values() for key in loss.keys}
    return SimpleNamespace(loss_type=loss_type, **{**every, **LOSSES[loss_type].keys})


def sigmoid(x: float) -> float:
    return math.exp(logsigmoid(x))


def log_odds(a: float) -> float:
    return a - math.log(1 - math.exp(a))


def random_pairs(n=6, seed=0):
    """Summed log-probs, token counts and reference sums of n pairs, plus the equal-pair edge case."""
    rng = torch.Generator().manual_seed(seed)
    tokens_w = torch.randint(3, 200, (n,), generator=rng)
    tokens_l = torch.randint(3, 200, (n,), generator=rng)
    w = -tokens_w * (0.2 + 2 * torch.rand(n, generator=rng, dtype=torch.float64))
    l = -tokens_l * (0.2 + 2 * torch.rand(n, generator=rng, dtype=torch.float64))
    ref_w = w + 5 * torch.randn(n, generator=rng, dtype=torch.float64)
    ref_l = l + 5 * torch.randn(n, generator=rng, dtype=torch.float64)
    equal = lambda t, v: torch.cat([t, torch.tensor([v], dtype=t.dtype)])  # noqa: E731
    return equal(w, -40.0), equal(l, -40.0), equal(tokens_w, 20), equal(tokens_l, 20), equal(ref_w, -40.0), equal(ref_l, -40.0)


# name: (function of the torch tensors, the same per pair in math, hyperparameters)
BASELINES = {
    "dpo": (lambda w, l, nw, nl, rw, rl: dpo_loss(w - rw, l - rl, 0.1),
            lambda w, l, nw, nl, rw, rl: -logsigmoid(0.1 * ((w - rw) - (l - rl)))),
    "ipo": (lambda w, l, nw, nl, rw, rl: ipo_loss(w - rw, l - rl, 0.5),
            lambda w, l, nw, nl, rw, rl: ((w - rw) - (l - rl) - 1 / (2 * 0.5)) ** 2),
    "rdpo": (lambda w, l, nw, nl, rw, rl: rdpo_loss(w - rw, l - rl, nw, nl, 0.05, 0.1),
             lambda w, l, nw, nl, rw, rl: -logsigmoid(0.05 * ((w - rw) - (l - rl)) - (0.1 * nw - 0.1 * nl))),
    "cpo": (lambda w, l, nw, nl, rw, rl: cpo_loss(w, l, nw, 0.05, 1.0),
            lambda w, l, nw, nl, rw, rl: -logsigmoid(0.05 * (w - l)) - 1.0 * w / nw),
    "orpo": (lambda w, l, nw, nl, rw, rl: orpo_loss(w / nw, l / nl, 0.5),
             lambda w, l, nw, nl, rw, rl: -w / nw - 0.5 * logsigmoid(log_odds(w / nw) - log_odds(l / nl))),
    "rrhf": (lambda w, l, nw, nl, rw, rl: rrhf_loss(w, l, nw, nl, 0.5),
             lambda w, l, nw, nl, rw, rl: max(0.0, l / nl - w / nw) - 0.5 * w),
    "slic_hf": (lambda w, l, nw, nl, rw, rl: slic_hf_loss(w, l, 0.5, 0.1),
                lambda w, l, nw, nl, rw, rl: max(0.0, 0.5 - w + l) - 0.1 * w),
}


def kto_math(w, l, rw, rl, z_w, z_l, beta=0.1, lam_w=1.0, lam_l=1.5):
    """KTO's lambda_y - v(x, y) on both responses of a pair, z being beta * the batch KL estimates."""
    return lam_w * (1 - sigmoid(beta * (w - rw) - z_w)) + lam_l * (1 - sigmoid(z_l - beta * (l - rl)))


def kto_batch_reference_points(w, l, rw, rl, beta=0.1):
    # z for the chosen responses from the rejected half's mean log-ratio, and the other way round, clamped at 0.
    z_w = beta * max(0.0, sum(b - rb for b, rb in zip(l, rl)) / len(l))
    z_l = beta * max(0.0, sum(a - ra for a, ra in zip(w, rw)) / len(w))
    return z_w, z_l


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_loss_and_gradient_match_formula(name):
    torch_fn, math_fn = BASELINES[name]
    tensors = random_pairs()
    w, l, nw, nl, rw, rl = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    got = torch_fn(w, l, nw, nl, rw, rl)
    rows = list(zip(*[t.tolist() for t in tensors]))
    expected = [math_fn(*row) for row in rows]
    assert got.tolist() == pytest.approx(expected, rel=1e-10, abs=1e-10)
    got.sum().backward()
    # One-sided differences of the math formula in the policy's log-probs (w, l): equal where it is
    # differentiable; at a hinge's kink (the equal pair) autograd must pick one of the two sides.
    h = 1e-6
    for grad, column in ((w.grad, 0), (l.grad, 1)):
        for i, row in enumerate(rows):
            up, down = list(row), list(row)
            up[column] += h
            down[column] -= h
            right = (math_fn(*up) - math_fn(*row)) / h
            left = (math_fn(*row) - math_fn(*down)) / h
            sides = [right, left] if abs(right - left) > 1e-4 else [(right + left) / 2]
            assert any(grad[i].item() == pytest.approx(side, rel=1e-5, abs=1e-5) for side in sides), (name, column, i, sides)


def test_kto_pair_loss_and_gradient_match_formula():
    tensors = random_pairs()
    w, l, nw, nl, rw, rl = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    got = kto_pair_loss(w - rw, l - rl, 0.1, 1.0, 1.5)
    ws, ls, _, _, rws, rls = [t.tolist() for t in tensors]
    z_w, z_l = kto_batch_reference_points(ws, ls, rws, rls)
    assert z_w > 0 or z_l > 0  # the clamp is not what the case exercises alone
    expected = [kto_math(a, b, ra, rb, z_w, z_l) for a, b, ra, rb in zip(ws, ls, rws, rls)]
    assert got.tolist() == pytest.approx(expected, rel=1e-10, abs=1e-10)
    got.sum().backward()
    # The reference points are not differentiated (KTO paper), so each pair's gradient is its own term's.
    for i, (a, b, ra, rb) in enumerate(zip(ws, ls, rws, rls)):
        s_w, s_l = sigmoid(0.1 * (a - ra) - z_w), sigmoid(z_l - 0.1 * (b - rb))
        assert w.grad[i].item() == pytest.approx(-1.0 * 0.1 * s_w * (1 - s_w), rel=1e-9)
        assert l.grad[i].item() == pytest.approx(1.5 * 0.1 * s_l * (1 - s_l), rel=1e-9)


def test_kto_pair_reference_point_is_clamped_at_zero():
    # Both halves with negative mean log-ratios: z = 0, so each term is 1 - sigmoid(+-beta*R).
    loss = kto_pair_loss(torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -4.0]), 0.5, 1.0, 1.0)
    expected = [(1 - sigmoid(0.5 * -3.0)) + (1 - sigmoid(-0.5 * -2.0)), (1 - sigmoid(0.5 * -1.0)) + (1 - sigmoid(-0.5 * -4.0))]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)


EDGE = [(0.0, 0.0), (-1e4, -1e4), (0.0, -1e4), (-1e4, 0.0), (-1e-30, -50.0), (-3.0, -3.0)]


@pytest.mark.parametrize("loss_type", [t for t in LOSSES if t not in ("sigmoid", "hinge")] + ["hinge"])
def test_every_loss_is_finite_at_equal_and_extreme_log_probs(loss_type):
    w = torch.tensor([a for a, _ in EDGE], dtype=torch.float32, requires_grad=True)
    l = torch.tensor([b for _, b in EDGE], dtype=torch.float32, requires_grad=True)
    tokens = torch.tensor([1, 1, 1, 1, 1, 40])
    args = loss_args(loss_type)
    logps = PairLogps(w, l, tokens, tokens, torch.zeros(len(EDGE)), torch.full((len(EDGE),), -5.0))
    loss, metrics = preference_loss(args, logps)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(w.grad).all() and torch.isfinite(l.grad).all()
    assert all(torch.isfinite(value).all() for value in metrics.values())


def test_equal_log_probs_give_the_textbook_values():
    same = torch.tensor([-7.0], dtype=torch.float64)
    assert dpo_loss(same - 1, same - 1, 0.1).item() == pytest.approx(math.log(2), rel=1e-12)
    assert ipo_loss(same, same, 0.1).item() == pytest.approx(25.0, rel=1e-12)  # (1/(2 tau))^2
    assert slic_hf_loss(same, same, 1.0, 0.0).item() == pytest.approx(1.0)
    assert orpo_loss(same / 7, same / 7, 1.0).item() == pytest.approx(1.0 + math.log(2), rel=1e-12)


def test_orpo_log_odds_stay_finite_for_a_certain_response():
    # A = 0 (probability 1) would make log(p/(1-p)) infinite; the loss saturates instead.
    chosen = torch.tensor([0.0, -1e-9], dtype=torch.float32, requires_grad=True)
    rejected = torch.tensor([-2.0, 0.0], dtype=torch.float32, requires_grad=True)
    loss = orpo_loss(chosen, rejected, 1.0)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(chosen.grad).all() and torch.isfinite(rejected.grad).all()
    assert loss[0].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss_type,reward_w,logp_w", [
    ("simpo", 2.0 * -0.5, -0.5), ("dpo", 0.1 * (-10.0 + 8.0), -10.0), ("ipo", 0.1 * (-10.0 + 8.0), -10.0),
    ("cpo", 0.1 * -10.0, -10.0), ("orpo", 0.1 * -0.5, -0.5), ("rrhf", -0.5, -0.5), ("slic_hf", -10.0, -10.0),
    ("kto_pair", 0.1 * (-10.0 + 8.0), -10.0), ("rdpo", 0.1 * (-10.0 + 8.0), -10.0),
])
def test_metrics_are_each_methods_implicit_reward(loss_type, reward_w, logp_w):
    # chosen: 20 tokens, sum -10 (A = -0.5), reference -8; rejected: 10 tokens, sum -20 (A = -2), reference -19.
    args = loss_args(loss_type)
    logps = PairLogps(torch.tensor([-10.0]), torch.tensor([-20.0]), torch.tensor([20]), torch.tensor([10]),
                      torch.tensor([-8.0]), torch.tensor([-19.0]))
    _, metrics = preference_loss(args, logps)
    assert metrics["rewards/chosen"].item() == pytest.approx(reward_w, rel=1e-6)
    assert metrics["logps/chosen"].item() == pytest.approx(logp_w, rel=1e-6)
    margin = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    assert metrics["rewards/margins"].item() == pytest.approx(margin.item())
    assert metrics["rewards/accuracies"].item() == float(margin.item() > 0)
