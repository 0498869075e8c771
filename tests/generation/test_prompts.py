"""Prompts: validated with the problem named, and a source without a 'prompt' column refused."""

import pytest
from helpers import write_jsonl

from simpo.errors import RecipeError
from simpo.generation.prompts import prompt_messages, read_prompts


def test_prompt_validation_names_the_problem():
    assert prompt_messages("hi", "r") == [{"role": "user", "content": "hi"}]
    for bad, message in (("  ", "r: empty prompt"), (7, "r: 'prompt' must be a string or a non-empty list"), ([{"role": "user"}], "not {'role'"),
                         ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "ends with a 'assistant'")):
        with pytest.raises(ValueError, match=message):
            prompt_messages(bad, "r")


def test_prompts_without_a_prompt_column_are_refused(tmp_path):
    source = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Say hi."}])
    with pytest.raises(RecipeError, match=r"alpaca.jsonl: rows need a 'prompt' column .* its columns: \['instruction'\]"):
        read_prompts(str(source), "train")
