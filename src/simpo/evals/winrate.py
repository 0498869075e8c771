"""AlpacaEval 2's win rates against the reference, raw and length-controlled (Arena-Hard's score: `evals.arena_hard`).

AlpacaEval 2. A judge compares the reference output with the model's and gives a preference p in
[1, 2]: 1 when the reference is better, 2 when the model's output is better, 1.5 for a draw (0 is
an older way of writing a draw and counts as 1.5). With y = p - 1 in [0, 1] over the n judged
instructions:

    win_rate       = 100 * mean(y)
    standard_error = 100 * std(y, ddof=1) / sqrt(n)

Length-controlled win rate (Dubois, Galambosi, Liang, Hashimoto 2024, "Length-Controlled
AlpacaEval: A Simple Way to Debias Automatic Evaluators", arXiv 2404.04475). A logistic model
explains the soft label y by the length difference and a constant:

    delta = len(reference output) - len(model output)          (characters)
    P(model preferred) = sigmoid(w_len * tanh(delta / std(delta, ddof=1)) + w_const)

fitted by maximum likelihood with y as the target probability, i.e. minimising
sum_i softplus(z_i) - y_i * z_i with z_i the linear predictor; the length-controlled win rate is
the prediction when both outputs have the same length, 100 * sigmoid(w_const). This is the
`length_controlled_minimal` formula of the `alpaca_eval` package, not its default
`length_controlled_v1`, which adds a per-instruction difficulty term and regularises towards
annotations of deliberately gamed baselines; both come from files on the Hugging Face hub.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

_EXPECTED_PREFERENCE = "a number in [1, 2] (1: the reference is better, 2: the model is better, 1.5 or 0: a draw), or None for a failed judgment"


def win_rate(preferences: Sequence[float | None]) -> dict:
    """AlpacaEval's win rate of the model over the reference, in percent, and its standard error.

    `preferences[i]` is the judge's preference on instruction i (see the module docstring); None
    marks a failed judgment and is left out of every count. `standard_error` is NaN for a single
    judgment. Raises ValueError for a value outside {0} and [1, 2], NaN, or when nothing is judged.
    """
    _, labels, draws = _soft_labels(preferences)
    count = len(labels)
    standard_error = float(np.std(labels, ddof=1) / math.sqrt(count) * 100) if count > 1 else math.nan
    return {
        "win_rate": float(labels.mean() * 100),
        "standard_error": standard_error,
        "n_wins": int((labels > 0.5).sum()),
        "n_wins_base": int((labels < 0.5).sum()),
        "n_draws": int(draws.sum()),
        "n_total": count,
    }


def length_controlled_win_rate(
    preferences: Sequence[float | None],
    model_lengths: Sequence[int],
    reference_lengths: Sequence[int],
) -> dict:
    """AlpacaEval 2's length-controlled win rate, `length_controlled_minimal` variant, in percent.

    `model_lengths[i]` and `reference_lengths[i]` are the lengths in characters of the two outputs
    judged in `preferences[i]`. Instructions whose preference is None are left out, before the length
    differences are standardised (alpaca_eval standardises over every row, judged or not).

    The fit is plain maximum likelihood (Newton's method in float64). alpaca_eval fits the same
    formula with scikit-learn's `LogisticRegressionCV` (liblinear, an L1 penalty on both weights whose
    strength 5-fold cross-validation grouped by instruction picks), so its weights are shrunk towards
    zero and its rate differs slightly from this one.

    Degenerate data. When the length feature takes a single value (every length difference the
    same, or all so many standard deviations from zero that tanh gives 1.0 for each) nothing tells a
    length effect from the constant: the length weight is 0 and the rate is the raw win rate. When
    every preference is 2 (or every one is 1) the rate is 100 (or 0), the constant weight +inf (or
    -inf) and the length weight 0. ValueError is raised when a length threshold has every win on one
    side and every loss on the other (the likelihood then has no maximum), when the fit does not
    converge (a few judgments whose features all sit on the flat end of the tanh, so that the rate
    at equal lengths is a far extrapolation), and for mismatched list lengths or lengths that are
    negative or not numbers.

    Returns {"length_controlled_winrate", "coefficients": {"tanh_std_delta_len", "const"}, "n"}.
    """
    if not len(model_lengths) == len(reference_lengths) == len(preferences):
        raise ValueError(
            f"length_controlled_win_rate needs one model length and one reference length per preference; got "
            f"{len(preferences)} preferences, {len(model_lengths)} model lengths and {len(reference_lengths)} reference lengths"
        )
    judged, labels, _ = _soft_labels(preferences)
    length_gaps = _lengths(reference_lengths, "reference_lengths")[judged] - _lengths(model_lengths, "model_lengths")[judged]
    count = len(labels)

    def result(rate: float, length_weight: float, constant_weight: float) -> dict:
        coefficients = {"tanh_std_delta_len": float(length_weight), "const": float(constant_weight)}
        return {"length_controlled_winrate": float(rate), "coefficients": coefficients, "n": count}

    if np.all(labels == 1.0):
        return result(100.0, 0.0, math.inf)
    if np.all(labels == 0.0):
        return result(0.0, 0.0, -math.inf)
    scale = float(np.std(length_gaps, ddof=1)) if count > 1 else 0.0
    length_feature = np.tanh(length_gaps / scale) if scale > 0 else np.zeros(count)
    if length_feature.min() == length_feature.max():  # nothing to tell the length effect from the constant
        mean = float(labels.mean())
        return result(100 * mean, 0.0, math.log(mean / (1 - mean)))
    if _separated(length_feature, labels):
        raise ValueError(
            f"length_controlled_win_rate: among the {count} judged instructions the length difference separates the "
            "preferences (the model wins, or draws, only on one side of some length difference and loses only on the other), "
            "so the length-controlled fit has no maximum-likelihood solution; it needs more judged instructions"
        )
    length_weight, constant_weight = _fit_soft_logistic(np.column_stack([length_feature, np.ones(count)]), labels)
    return result(100 * _sigmoid(constant_weight), length_weight, constant_weight)


def _soft_labels(preferences: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The judged positions, their labels y = p - 1 (a draw written 0 read as 1.5) and which are draws."""
    judged, values = [], []
    for index, preference in enumerate(preferences):
        if preference is None:
            continue
        if isinstance(preference, bool) or not isinstance(preference, numbers.Real):
            raise ValueError(f"preference {index} is {_shown(preference)}; expected {_EXPECTED_PREFERENCE}")
        value = float(preference)
        if value == 0.0:
            value = 1.5
        if not 1.0 <= value <= 2.0:  # also rejects NaN
            raise ValueError(f"preference {index} is {_shown(preference)}; expected {_EXPECTED_PREFERENCE}")
        judged.append(index)
        values.append(value)
    if not values:
        raise ValueError(f"no preference to score: all {len(preferences)} are None; expected {_EXPECTED_PREFERENCE}")
    preference_array = np.asarray(values, dtype=np.float64)
    return np.asarray(judged, dtype=np.int64), preference_array - 1.0, preference_array == 1.5


def _lengths(lengths: Sequence[int], name: str) -> np.ndarray:
    for index, length in enumerate(lengths):
        if isinstance(length, bool) or not isinstance(length, numbers.Real) or not 0 <= length < math.inf:
            raise ValueError(f"{name}[{index}] is {_shown(length)}; expected the output's length in characters, a number >= 0")
    return np.asarray(lengths, dtype=np.float64)


def _shown(value) -> str:
    """A value for an error message: numbers as written (2.5, not np.float64(2.5)), anything else quoted."""
    return str(value) if isinstance(value, numbers.Number) and not isinstance(value, bool) else repr(value)


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


def _soft_logistic_loss(features: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Negative log-likelihood of soft labels: sum_i softplus(z_i) - y_i * z_i, z = features @ weights."""
    logits = features @ weights
    return float(np.sum(np.logaddexp(0.0, logits) - labels * logits))


def _separated(length_feature: np.ndarray, labels: np.ndarray) -> bool:
    """Whether a direction of the weights raises the likelihood forever, so that it has no maximum.

    With soft labels each instruction counts as a win with weight y and a loss with weight 1 - y.
    For a model linear in one feature that takes more than one value, plus a constant, such a
    direction exists exactly when some threshold puts every win (y > 0) on one side and every loss
    (y < 1) on the other, ties allowed (Albert and Anderson 1984, "On the existence of maximum
    likelihood estimates in logistic regression models")."""
    wins, losses = length_feature[labels > 0], length_feature[labels < 1]
    return bool(wins.min() >= losses.max() or wins.max() <= losses.min())


def _fit_soft_logistic(features: np.ndarray, labels: np.ndarray, max_steps: int = 500) -> np.ndarray:
    """Maximum-likelihood weights of a logistic model with targets in [0, 1], by damped Newton steps.

    The loss is convex and, for data that `_separated` lets through, has a finite minimum. Each step
    solves the Newton system and halves the step until the loss does not increase (beyond rounding);
    it stops when the gradient is down to rounding noise or a step has moved the weights by less than
    1e-12 relative.
    """
    weights = np.zeros(features.shape[1])
    loss = _soft_logistic_loss(features, labels, weights)
    for _ in range(max_steps):
        probabilities = _sigmoid(features @ weights)
        gradient = features.T @ (probabilities - labels)
        if np.max(np.abs(gradient)) <= 1e-13 * len(labels):  # rounding noise: each row adds up to ~1e-16
            return weights
        hessian = features.T @ (features * (probabilities * (1 - probabilities))[:, None])
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        rounding = 1e-12 * max(1.0, abs(loss))
        fraction = 1.0
        while True:
            candidate = weights - fraction * step
            candidate_loss = _soft_logistic_loss(features, labels, candidate)
            if candidate_loss <= loss + rounding or fraction < 1e-10:
                break
            fraction /= 2
        moved = np.max(np.abs(candidate - weights))
        weights, loss = candidate, candidate_loss
        if moved <= 1e-12 * max(1.0, float(np.max(np.abs(weights)))):
            return weights
    raise ValueError(
        f"length_controlled_win_rate: the logistic fit did not converge in {max_steps} Newton steps (weights "
        f"{weights.tolist()}, length feature tanh(delta / std) from {float(features[:, 0].min())} to {float(features[:, 0].max())}): "
        "the rate at equal lengths is too far an extrapolation from these judgments; it needs more judged instructions"
    )
