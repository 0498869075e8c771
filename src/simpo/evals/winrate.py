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
`length_controlled_minimal` formula of the `alpaca_eval` package (`length_controlled_win_rate`).

The leaderboard's LC is the package's `length_controlled_v1` (`length_controlled_v1` here), which adds
each instruction's difficulty d_i and fits the model's judgments together with the annotations of
two deliberately gamed baselines (GPT-4 Turbo prompted to be verbose, and to be concise), read from
`df_gamed.csv` of the hub dataset `tatsu-lab/alpaca_eval`:

    P(preferred) = sigmoid(w_len * tanh(s) + w_diff * d + w_ng * not_gamed)      (no other constant)

where s is the standardised length difference (the model's rows: delta / std(delta, ddof=1); the
gamed rows carry theirs in the file), not_gamed is 1 on the model's rows and 0 on the gamed ones,
and each gamed row weighs 0.2 / 2 in the likelihood (a regularisation strength of 0.2 shared by the
two baselines) against 1 for each of the model's. The rate is the model's mean predicted preference
at equal lengths over its instructions, 100 * mean_i sigmoid(w_diff * d_i + w_ng).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# length_controlled_v1: the regularisation strength toward the gamed baselines, shared by the two of them.
GAMED_REGULARIZATION, GAMED_BASELINES = 0.2, 2

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


@dataclass(frozen=True)
class GamedAnnotations:
    """What `length_controlled_v1` needs from alpaca_eval's `df_gamed.csv`: every row's standardised
    length difference (`std_delta_len`), `instruction_difficulty`, `not_gamed_baseline` and soft label
    (`preference`, already in [0, 1]; NaN where a row has none, which leaves it out), and
    `difficulty`: each instruction's difficulty by its index among the 805, from its first row."""

    difficulty: Mapping[int, float]
    std_delta_len: np.ndarray
    instruction_difficulty: np.ndarray
    not_gamed_baseline: np.ndarray
    preference: np.ndarray


def length_controlled_v1(
    preferences: Sequence[float | None],
    model_lengths: Sequence[int],
    reference_lengths: Sequence[int],
    instructions: Sequence[int],
    gamed: GamedAnnotations,
) -> dict:
    """AlpacaEval 2's length-controlled win rate, `length_controlled_v1` variant (the leaderboard's), in percent.

    Follows `alpaca_eval/metrics/glm_winrate.py` (alpaca-eval 0.6.6: `GLM_INFO["length_controlled_v1"]`,
    `_get_featurized_data`, `get_length_controlled_winrate`); the formula is in the module docstring.
    Row i is the model's output on instruction `instructions[i]` (its index among the 805, which picks
    its difficulty), judged `preferences[i]` (None: failed), with the two outputs' lengths in
    characters. As the package does, the length differences are standardised over every row, judged or
    not; the fit uses the judged rows and every gamed row with a label; the rate averages the
    prediction over every row.

    The fit is weighted maximum likelihood (Newton's method in float64). The package fits the same
    weighted likelihood with an L1 penalty whose strength 5-fold cross-validation picks (scikit-learn's
    `LogisticRegressionCV`, liblinear), so its weights are shrunk a little and its rate differs slightly.
    When every judged preference is 2 (or 1) and no gamed row counts as not gamed, the rate is 100
    (or 0). ValueError for mismatched lengths, an instruction without a difficulty, bad preferences or
    lengths, and a fit that does not converge (judgments separated by the features).

    Returns {"length_controlled_winrate", "coefficients": {"tanh_std_delta_len", "instruction_difficulty",
    "not_gamed_baseline"}, "n" (the judged rows)}.
    """
    if not len(model_lengths) == len(reference_lengths) == len(preferences) == len(instructions):
        raise ValueError(
            f"length_controlled_v1 needs one model length, one reference length and one instruction index per "
            f"preference; got {len(preferences)} preferences, {len(model_lengths)} model lengths, "
            f"{len(reference_lengths)} reference lengths and {len(instructions)} instruction indices"
        )
    judged, labels, _ = _soft_labels(preferences)
    length_gaps = _lengths(reference_lengths, "reference_lengths") - _lengths(model_lengths, "model_lengths")
    missing = [index for index in instructions if index not in gamed.difficulty]
    if missing:
        raise ValueError(
            f"length_controlled_v1: instruction {missing[0]} has no instruction_difficulty in the gamed annotations "
            f"({len(missing)} of {len(instructions)} instructions have none)"
        )
    difficulty = np.asarray([gamed.difficulty[index] for index in instructions], dtype=np.float64)
    scale = float(np.std(length_gaps, ddof=1)) if len(length_gaps) > 1 else 0.0
    length_feature = np.tanh(length_gaps / scale) if scale > 0 else np.zeros(len(length_gaps))

    labelled = ~np.isnan(gamed.preference)
    gamed_features = np.column_stack([np.tanh(gamed.std_delta_len[labelled]), gamed.instruction_difficulty[labelled],
                                      gamed.not_gamed_baseline[labelled].astype(np.float64)])
    gamed_weights = np.where(gamed.not_gamed_baseline[labelled], 1.0, GAMED_REGULARIZATION / GAMED_BASELINES)
    gamed_labels = gamed.preference[labelled]

    def result(rate: float, weights) -> dict:
        names = ("tanh_std_delta_len", "instruction_difficulty", "not_gamed_baseline")
        return {"length_controlled_winrate": float(rate), "coefficients": dict(zip(names, map(float, weights))), "n": len(labels)}

    if not gamed.not_gamed_baseline[labelled].any() and (np.all(labels == 1.0) or np.all(labels == 0.0)):
        # The model's rows alone carry not_gamed: its weight runs to +-inf, the gamed rows fix the other two.
        unanimous = bool(labels[0] == 1.0)
        others = (_fit_soft_logistic(gamed_features[:, :2], gamed_labels, gamed_weights, "length_controlled_v1")
                  if len(gamed_labels) else np.zeros(2))
        return result(100.0 if unanimous else 0.0, [*others, math.inf if unanimous else -math.inf])
    features = np.vstack([np.column_stack([length_feature[judged], difficulty[judged], np.ones(len(judged))]), gamed_features])
    weights = _fit_soft_logistic(features, np.concatenate([labels, gamed_labels]),
                                 np.concatenate([np.ones(len(labels)), gamed_weights]), "length_controlled_v1")
    rate = 100 * float(np.mean(_sigmoid(weights[1] * difficulty + weights[2])))
    return result(rate, weights)


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


def _soft_logistic_loss(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, row_weights: np.ndarray) -> float:
    """Weighted negative log-likelihood of soft labels: sum_i r_i * (softplus(z_i) - y_i * z_i), z = features @ weights."""
    logits = features @ weights
    return float(np.sum(row_weights * (np.logaddexp(0.0, logits) - labels * logits)))


def _separated(length_feature: np.ndarray, labels: np.ndarray) -> bool:
    """Whether a direction of the weights raises the likelihood forever, so that it has no maximum.

    With soft labels each instruction counts as a win with weight y and a loss with weight 1 - y.
    For a model linear in one feature that takes more than one value, plus a constant, such a
    direction exists exactly when some threshold puts every win (y > 0) on one side and every loss
    (y < 1) on the other, ties allowed (Albert and Anderson 1984, "On the existence of maximum
    likelihood estimates in logistic regression models")."""
    wins, losses = length_feature[labels > 0], length_feature[labels < 1]
    return bool(wins.min() >= losses.max() or wins.max() <= losses.min())


def _fit_soft_logistic(features: np.ndarray, labels: np.ndarray, row_weights: np.ndarray | None = None,
                       name: str = "length_controlled_win_rate", max_steps: int = 500) -> np.ndarray:
    """Maximum-likelihood weights of a logistic model with targets in [0, 1] and row weights (default
    1), by damped Newton steps.

    The loss is convex and, for data that `_separated` lets through, has a finite minimum. Each step
    solves the Newton system and halves the step until the loss does not increase (beyond rounding);
    it stops when the gradient is down to rounding noise or a step has moved the weights by less than
    1e-12 relative. `name` starts the error raised when it does not converge.
    """
    row_weights = np.ones(len(labels)) if row_weights is None else row_weights
    weights = np.zeros(features.shape[1])
    loss = _soft_logistic_loss(features, labels, weights, row_weights)
    for _ in range(max_steps):
        probabilities = _sigmoid(features @ weights)
        gradient = features.T @ (row_weights * (probabilities - labels))
        if np.max(np.abs(gradient)) <= 1e-13 * len(labels):  # rounding noise: each row adds up to ~1e-16
            return weights
        hessian = features.T @ (features * (row_weights * probabilities * (1 - probabilities))[:, None])
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
            candidate_loss = _soft_logistic_loss(features, labels, candidate, row_weights)
            if candidate_loss <= loss + rounding or fraction < 1e-10:
                break
            fraction /= 2
        moved = np.max(np.abs(candidate - weights))
        weights, loss = candidate, candidate_loss
        if moved <= 1e-12 * max(1.0, float(np.max(np.abs(weights)))):
            return weights
    raise ValueError(
        f"{name}: the logistic fit did not converge in {max_steps} Newton steps (weights "
        f"{weights.tolist()}, length feature tanh(delta / std) from {float(features[:, 0].min())} to {float(features[:, 0].max())}): "
        "the rate at equal lengths is too far an extrapolation from these judgments; it needs more judged instructions"
    )
