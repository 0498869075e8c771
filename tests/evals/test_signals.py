"""The signals of a run gone wrong, on hand-written answers: a loop at the end of an answer (and only
there) repeats itself, the shares and lengths are plain counts, and a collapse is said in one line."""

import pytest

from simpo.evals.signals import answer_signals, collapse, loop_period, repeats_itself


@pytest.mark.parametrize("text, period", [
    ("The answer is 5. " * 3, 4),  # 3 copies of 4 words: 12
    ("no " * 12, 1),
    ("Let me think. " + "So 3 + 4 = 7. " * 3, 6),  # 18 words of period 6 at the end
    ("x = 1, y = 2, " * 2 + "x = 1, y = 2, x = 1,", 6),  # cut mid-copy by the token limit: 21 words of period 6
    ("a b c d e f g h i j " * 3, 10),  # period 10, 30 words
])
def test_an_answer_ending_in_a_loop_repeats_itself(text, period):
    assert loop_period(text) == period
    assert repeats_itself(text)


@pytest.mark.parametrize("text", [
    "The answer is 5.",
    "no " * 11,  # 11 words: fewer than 12
    "The answer is 5. The answer is 5. The answer is 6.",  # breaks at its last word
    "ha ha ha ha ha ha ha ha ha ha ha ha ha. So the total is 12.",  # escaped the loop and ended
    "one two three four five six seven eight nine ten eleven twelve thirteen",
    "",
])
def test_an_answer_that_does_not_end_in_a_loop_does_not(text):
    assert loop_period(text) is None


def test_answer_signals_count_shares_and_mean_length():
    texts = ["ok " * 12, "fine", "So 3 + 4 = 7. " * 3, "done"]
    assert answer_signals(texts, [12, 1, 24, 1], [True, False, True, False]) == {
        "repetitive": 0.5, "truncated": 0.5, "mean_length_tokens": 9.5}
    assert answer_signals(texts, [12, 1, 24, 1], None)["truncated"] is None


def test_a_collapse_is_said_in_one_line_with_its_numbers():
    before = {"repetitive": 0.05, "truncated": 0.10, "mean_length_tokens": 40.0}
    assert collapse(before, {"repetitive": 0.10, "truncated": 0.25, "mean_length_tokens": 70.0}) is None  # below every threshold
    line = collapse(before, {"repetitive": 0.45, "truncated": 0.60, "mean_length_tokens": 120.0})
    assert line == ("warning: the held-out answers collapsed: 45% repeat themselves (before 5%), 60% hit the token limit "
                    "(before 10%), mean length 120 tokens (before 40, x3.0); read the answers in the eval folder")
    assert collapse(before, {"repetitive": 0.05, "truncated": 0.10, "mean_length_tokens": 80.0}) is not None  # twice as long
