"""Programmatic rewards: the last number against the reference answer, the fraction of constraints met."""

from simpo.rewards.programmatic import constraints_met, numeric_answer


def test_numeric_answer_reads_the_last_number():
    assert numeric_answer("12 + 30 = 42. The answer is 42.", 42) == 1.0
    assert numeric_answer("The answer is 1,234.", "1234") == 1.0
    assert numeric_answer("It is -7.", -7) == 1.0
    assert numeric_answer("42 is close, but the answer is 41.", 42) == 0.0
    assert numeric_answer("no number here", 3) == 0.0


def test_constraints_score_is_the_fraction_met():
    constraints = {"max_words": 3, "lowercase": True, "keywords": ["Cat", "dog"]}
    # 4 words (fails max_words), lowercase (ok), has "cat" (ok), no "dog" (fails): 2 of 4.
    assert constraints_met("a cat sat here", constraints) == 2 / 4
    assert constraints_met("cat and dog", constraints) == 1.0
