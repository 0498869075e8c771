"""The signals that say a run went wrong, read from answers: self-repetition, length, truncation.

An answer *repeats itself* when it ends in a loop: its last L words (split on whitespace) repeat with
a period of n words — word j equals word j - n for every word of the run after its first n — for
some n from 1 to `MAX_PERIOD`, with L at least `MIN_COPIES` periods and at least `MIN_WORDS` words.
So "the answer is 5. the answer is 5. the answer is 5." loops (n = 4, L = 12), "no no no no no no no
no no no no no" loops (n = 1, L = 12), and a loop cut mid-period by `max_new_tokens` still counts (the
last copy may be partial). The run must reach the end of the answer: a model that escapes its loop
and ends its turn is not flagged. Words, not tokens, so the count does not depend on the tokenizer.

A pipeline run's held-out answers *collapsed* when, from the initial model to the trained one, the
share of answers that repeat themselves rose by `COLLAPSE_REPEAT_RISE` or more, the share that hit
the token limit rose by `COLLAPSE_TRUNCATED_RISE` or more, or the mean length grew `COLLAPSE_LENGTH_RATIO`
times or more.
"""

from __future__ import annotations

MAX_PERIOD = 20
MIN_COPIES = 3
MIN_WORDS = 12
COLLAPSE_REPEAT_RISE = 0.10
COLLAPSE_TRUNCATED_RISE = 0.20
COLLAPSE_LENGTH_RATIO = 2.0


def loop_period(text: str) -> int | None:
    """The period n (in words) of the loop `text` ends in, the shortest one; None when it ends in none."""
    words = text.split()
    for period in range(1, MAX_PERIOD + 1):
        run = period  # the words at the end that repeat with this period, the first copy included
        while run < len(words) and words[-run - 1] == words[-run - 1 + period]:
            run += 1
        if run >= max(MIN_COPIES * period, MIN_WORDS):
            return period
    return None


def repeats_itself(text: str) -> bool:
    return loop_period(text) is not None


def answer_signals(texts: list[str], tokens: list[int], truncated: list[bool] | None) -> dict:
    """The share of answers that repeat themselves, that hit the token limit (None when unknown), and
    their mean length in tokens."""
    count = max(len(texts), 1)
    return {
        "repetitive": sum(map(repeats_itself, texts)) / count,
        "truncated": sum(truncated) / count if truncated is not None else None,
        "mean_length_tokens": sum(tokens) / count,
    }


def collapse(before: dict, after: dict) -> str | None:
    """One line saying how the trained model's held-out answers collapsed against the initial model's
    (summaries with `repetitive`, `truncated`, `mean_length_tokens`), or None when they did not."""
    rise = after.get("repetitive", 0.0) - before.get("repetitive", 0.0)
    cut_rise = (after.get("truncated") or 0.0) - (before.get("truncated") or 0.0)
    length_ratio = after["mean_length_tokens"] / max(before["mean_length_tokens"], 1e-9)
    if rise < COLLAPSE_REPEAT_RISE and cut_rise < COLLAPSE_TRUNCATED_RISE and length_ratio < COLLAPSE_LENGTH_RATIO:
        return None
    cut = (f", {after['truncated']:.0%} hit the token limit (before {before['truncated']:.0%})"
           if after.get("truncated") is not None and before.get("truncated") is not None else "")
    return (f"warning: the held-out answers collapsed: {after.get('repetitive', 0.0):.0%} repeat themselves "
            f"(before {before.get('repetitive', 0.0):.0%}){cut}, mean length {after['mean_length_tokens']:.0f} tokens "
            f"(before {before['mean_length_tokens']:.0f}, x{length_ratio:.1f}); read the answers in the eval folder")
