"""ZeroEval's answer extraction and scoring on tricky outputs, each expected value worked out by hand."""

from __future__ import annotations

import json

import pytest

from simpo.evals.zeroeval import (
    extract_prediction,
    multiple_choice_prompt,
    numbers_match,
    open_question_prompt,
    sanitize_number,
    score_choice,
    score_open,
    summarize,
)


def test_the_first_complete_json_object_is_read_and_a_second_ignored():
    output = 'Sure.\n{"reasoning": "3 + 4 = 7", "answer": "7"}\nOr maybe {"reasoning": "no", "answer": "8"}'
    assert extract_prediction(output) == {"reasoning": "3 + 4 = 7", "answer": "7"}
    assert extract_prediction(output, last=True) == {"reasoning": "no", "answer": "8"}


def test_a_json_object_spread_over_lines_and_nested_braces_parses():
    output = '```json\n{\n  "reasoning": "a {set} of 2",\n  "answer": 12\n}\n```'
    assert extract_prediction(output) == {"reasoning": "a {set} of 2", "answer": "12"}


def test_without_valid_json_the_fields_are_read_by_pattern():
    broken = '{"reasoning": "it is "about" 5", "answer": "5",}'  # not JSON: inner quotes, trailing comma
    assert extract_prediction(broken)["answer"] == "5"
    assert extract_prediction('The answer: C because of the law.', last=True)["answer"] == "C"
    assert extract_prediction('"answer": 42 apples') == {"reasoning": "", "answer": "42"}


def test_no_answer_at_all_is_none_and_scores_wrong():
    assert extract_prediction("I think it is twelve.") is None
    assert score_open("I think it is twelve.", "12") == {"answer": None, "reasoning": None, "correct": False}


@pytest.mark.parametrize("answer, reference, expected", [
    ("$1,234.50", "1234.5", True),
    ("1234.50 dollars", "1,234.5", True),
    ("3/4", "0.75", True),
    ("-7", "7", False),
    ("about 12 or 13", "12", True),  # the first number counts
    ("twelve", "12", False),
    ("1/0", "1", True),  # a division by zero is not a fraction: the first number, 1, is compared
])
def test_numbers_are_compared_after_sanitizing(answer, reference, expected):
    assert numbers_match(answer, reference) is expected


def test_sanitize_removes_dollars_and_commas_and_evaluates_fractions():
    assert sanitize_number(" $1,000 ") == "1000"
    assert sanitize_number("-1/4") == "-0.25"


def test_a_letter_in_prose_inside_the_answer_field_is_not_the_letter():
    output = json.dumps({"reasoning": "B fits", "answer": "The answer is B"})
    assert score_choice(output, "B")["correct"] is False
    assert score_choice(json.dumps({"reasoning": "B fits", "answer": "B"}), "B")["correct"] is True


def test_summary_counts_no_answer_as_wrong_and_measures_reasoning_of_answered_only():
    scored = [score_open('{"reasoning": "abcd", "answer": "4"}', "4"), score_open('{"reasoning": "ab", "answer": "5"}', "4"),
              score_open("no idea", "4")]
    assert summarize(scored) == pytest.approx({"accuracy": 100 / 3, "no_answer": 100 / 3, "length": 3.0})


def test_prompts_hold_the_question_the_lettered_choices_and_the_json_format():
    text = multiple_choice_prompt("Which is red?", ["sky", "blood", "grass", "snow"])
    assert "Which is red?" in text and "- (B) blood" in text and "- (D) snow" in text
    assert '"reasoning": "___"' in text and '"answer": "___"' in text
    assert "What is 2+2?" in open_question_prompt("What is 2+2?")
