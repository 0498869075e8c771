"""Pairwise judges behind one interface, and `open_judge(spec)` to make one.

A judge answers two questions:

- `prefer(items)`: AlpacaEval 2. Each item is (instruction, model_output, reference_output); the
  answer is AlpacaEval's preference in [1, 2]: 1 when the reference is better, 2 when the model's
  output is, fractions for a judge's probability. The two outputs are shown in alpaca_eval's order,
  a coin seeded by the instruction alone (`shown_order`), and the answer is mapped back.
- `verdicts(games)`: Arena-Hard. Each game is (question_text, category, answer_a, answer_b); the
  answer is one of `VERDICTS` ("A>>B" ... "B>>A").

Where a judge fails for one item (an HTTP error after the retries, a malformed answer, an input too
long for the judge), that item gets None and a counter says why; the run goes on. Every judge has a
`name` (`openai:MODEL`, `local:MODEL`, `reward:MODEL`), stored with every number it makes; whether a
number may stand beside the card's is its protocol's matter (`evals.protocol`), the judge one element.

The judges themselves: `judge_openai.py` (any OpenAI-compatible endpoint), `judge_local.py` (a causal
LM run here, deciding by log-probabilities), `judge_reward.py` (a sequence-classification reward model).
"""

from __future__ import annotations

import random
import threading

from ..config.judge import check_openai_only, judge_kind
from ..errors import RecipeError

# requests: judgments asked (the OpenAI judge: HTTP requests sent, retries included); retries;
# rate_limited: 429 answers; timeouts; errors: items given up after an HTTP or connection problem;
# malformed: answers with no usable preference or verdict; text_fallback: AlpacaEval preferences
# read from the answer text because no logprobs of m/M came back; truncated: inputs whose answers
# were cut to fit (or judgments cut at max_tokens); too_long: inputs that do not fit even with empty answers;
# asked_again: Arena-Hard v0.1 judgments without a [[..]] label, whose judge was asked once more to give one.
COUNTERS = ("requests", "retries", "rate_limited", "timeouts", "errors", "malformed", "text_fallback", "truncated", "too_long",
            "asked_again")

# Arena-Hard's five verdicts, from "A much better" to "B much better".
VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
# Labels judges also write, read as the verdict they mean.
_SAME_VERDICT = {"A<<B": "B>>A", "A<B": "B>A", "B=A": "A=B", "B<A": "A>B", "B<<A": "A>>B"}


def canonical_verdict(label: str | None) -> str | None:
    """One of `VERDICTS` for a parsed label ("B<A" -> "A>B"); None for anything else."""
    if label is None:
        return None
    label = label.strip().upper()
    return label if label in VERDICTS else _SAME_VERDICT.get(label)


# The order of the two AlpacaEval outputs, as a result's protocol names it (`evals.protocol.CARD`).
SHOWN_ORDER = "alpaca_eval's, seeded by the instruction"


def shown_order(instruction: str, model_output: str, reference_output: str) -> tuple[str, str, bool]:
    """(output_1, output_2, model_first): the two outputs in the order the judge sees them, alpaca_eval's.

    Its pairwise annotator (`SinglePairwiseAnnotator` in `alpaca_eval/annotators/pairwise_evaluator.py`,
    with `RandomSwitchTwoColumnsProcessor` of `alpaca_eval/processors.py`) shows the reference first and
    the model's output second unless a coin switches them; the coin is
    `random.Random(seed).choices([False, True])[0]` with seed the switch column's name
    `is_switched_outputs`, then the instruction, then the annotator's seed `0`, as one string. So the
    order depends on the instruction alone, the same on every machine and for every model."""
    switched = random.Random(f"is_switched_outputs{instruction}0").choices((False, True))[0]
    return (model_output, reference_output, True) if switched else (reference_output, model_output, False)


def model_preference(second_share: float, model_first: bool) -> float:
    """The preference for the model's output, from the judge's probability that the second output
    shown (`M`) is better: 1 + that share when the model was shown second, 2 - it when first."""
    shown = 1.0 + second_share
    return 3.0 - shown if model_first else shown


class Judge:
    """The interface. `name` says which judge made a number, `counters` what went wrong (keys in `COUNTERS`)."""

    def __init__(self, name: str):
        self.name = name
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()

    def count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[key] += amount

    def prefer(self, items: list[tuple[str, str, str]]) -> list[float | None]:
        raise NotImplementedError

    def verdicts(self, games: list[tuple[str, str, str, str]]) -> list[str | None]:
        raise NotImplementedError


def open_judge(spec: str, base_url: str | None = None, dtype: str | None = None, batch_size: int = 8,
               max_length: int | None = None, max_tokens: int | None = None) -> Judge:
    """The judge `spec` names. `base_url` is the OpenAI judge's endpoint; `dtype`, `batch_size` and
    `max_length` (the most tokens of one judge input; unset: the model's context) are the local and
    reward judges'; `max_tokens` caps an openai judge's Arena-Hard judgments. MODEL of a local or
    reward judge is a folder, a hub name or a bundled alias (`smollm2-135m-instruct`)."""
    kind, model = judge_kind(spec)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise RecipeError(f"judge batch_size {batch_size!r} must be a whole number of at least 1")
    if kind == "openai":
        from .judge_openai import OpenAIJudge

        return OpenAIJudge(model, base_url=base_url, max_tokens=max_tokens)
    check_openai_only(spec, {"judge base_url": base_url, "judge max_tokens": max_tokens})
    if kind == "local":
        from .judge_local import LocalJudge

        return LocalJudge(model, dtype=dtype, batch_size=batch_size, max_length=max_length)
    from .judge_reward import RewardJudge

    return RewardJudge(model, dtype=dtype, batch_size=batch_size, max_length=max_length)
