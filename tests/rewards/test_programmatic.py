"""Programmatic rewards: the last number against the reference answer, the fraction of constraints
met, and the check before any work that every row's references are there and usable."""

import pytest

from simpo.errors import DataError
from simpo.rewards.programmatic import check_references, constraints_met, numeric_answer

CONSTRAINTS = [{"type": "constraints"}]


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
    # A null constraint is not set (a struct column fills a row's missing keys with null).
    assert constraints_met("A Cat sat here", {"max_words": None, "lowercase": None, "keywords": ["cat"]}) == 1.0
    assert constraints_met("a cat sat here", {"max_words": 3.0, "keywords": None}) == 0.0


@pytest.mark.parametrize("constraints,message", [
    ({"max_words": "5"}, "constraint 'max_words' must be a positive whole number, got '5'"),
    ({"max_words": 0}, "constraint 'max_words' must be a positive whole number, got 0"),
    ({"max_words": 2.5}, "constraint 'max_words' must be a positive whole number, got 2.5"),
    ({"max_words": True}, "constraint 'max_words' must be a positive whole number, got True"),
    ({"max_words": float("inf")}, "constraint 'max_words' must be a positive whole number, got inf"),
    ({"lowercase": "yes"}, "constraint 'lowercase' must be true or false, got 'yes'"),
    # Before this check, a string was checked letter by letter: answers without "hello" scored 1.
    ({"keywords": "hello"}, "constraint 'keywords' must be a list of non-empty strings, got 'hello'"),
    ({"keywords": ["hello", 5]}, "constraint 'keywords' must be a list of non-empty strings, got ['hello', 5]"),
    ({"keywords": [" "]}, "constraint 'keywords' must be a list of non-empty strings, got [' ']"),
    ({"max_lines": 2}, "unknown constraint 'max_lines'; the constraints are max_words, lowercase, keywords"),
    ({}, "the constraints reward needs a 'constraints' mapping of one or more of max_words, lowercase, keywords, got {}; "
         "add it to every prompt row or drop this reward"),
    ({"max_words": None}, "the constraints reward needs a 'constraints' mapping of one or more of max_words, lowercase, "
                          "keywords, got {'max_words': None}; add it to every prompt row or drop this reward"),
    ("max_words: 5", "the constraints reward needs a 'constraints' mapping of one or more of max_words, lowercase, keywords, "
                     "got 'max_words: 5'; add it to every prompt row or drop this reward"),
])
def test_constraints_that_cannot_be_checked_are_refused_naming_the_row(constraints, message):
    rows = [{"row": 0, "constraints": {"max_words": 3, "lowercase": False, "keywords": ["hi"]}}, {"row": 6, "constraints": constraints}]
    with pytest.raises(DataError) as raised:
        check_references(CONSTRAINTS, rows, "prompts.jsonl")
    assert str(raised.value) == f"prompts.jsonl, row 7: {message}"


def test_references_that_can_be_used_pass():
    rows = [{"row": 0, "answer": "1,234", "constraints": {"max_words": 5.0, "lowercase": True, "keywords": None}},
            {"row": 1, "answer": -7, "constraints": {"keywords": ["cat"]}}]
    check_references([{"type": "numeric_answer"}, *CONSTRAINTS, {"type": "reward_model", "model": "rm"}], rows, "prompts.jsonl")
    with pytest.raises(DataError) as raised:
        check_references([{"type": "numeric_answer", "answer_key": "solution"}], rows, "prompts.jsonl")
    assert str(raised.value) == ("prompts.jsonl, row 1: the numeric_answer reward needs a reference number in 'solution', "
                                 "got None; add it to every prompt row or drop this reward")
