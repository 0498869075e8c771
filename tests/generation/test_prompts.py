"""Prompts: validated with the problem named, rows named from 1, unusable prompts skipped and counted,
a prompt holding a control token of the template refused, and a source without a 'prompt' column
refused."""

import logging

import pytest
from helpers import write_jsonl

from simpo.errors import DataError, RecipeError
from simpo.generation.prompts import PromptRenderer, check_lengths, prompt_messages, read_prompts


def test_prompt_validation_names_the_problem():
    assert prompt_messages("hi", "r") == [{"role": "user", "content": "hi"}]
    for bad, message in (("  ", "r: empty prompt"), (7, "r: 'prompt' must be a string or a non-empty list"), ([{"role": "user"}], "not {'role'"),
                         ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "r: the prompt's last turn is 'assistant'"),
                         ([{"role": "usr", "content": "q"}], "r: turn 1 of 'prompt' has role 'usr'"),
                         ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}], "r: turn 1 of 'prompt' is 'assistant' where 'user' is due")):
        with pytest.raises(ValueError, match=message):
            prompt_messages(bad, "r")


def test_unusable_prompts_are_skipped_named_from_one_and_counted(tmp_path, caplog):
    rows = [{"prompt": "What is 2 + 3?"}, {"prompt": [{"role": "system", "content": "Be brief."}]}, {"prompt": " "}, {"prompt": "Hi."}]
    source = write_jsonl(tmp_path / "prompts.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="simpo"):
        kept, skipped = read_prompts(str(source), "train")
    assert [(row.row, row.prompt) for row in kept] == [(0, "What is 2 + 3?"), (3, "Hi.")]
    assert skipped == {"not a prompt": 1, "empty prompt": 1}
    assert [record.getMessage() for record in caplog.records] == [
        f"skipped: {source}, row 2: the prompt's last turn is 'system'; a prompt ends with the user's turn that the answer replies to",
        f"skipped: {source}, row 3: empty prompt",
    ]


def test_a_prompt_holding_a_control_token_is_refused_naming_its_row(tmp_path, smollm2_tokenizer):
    rows = [{"prompt": "What is 2 + 3?"}, {"prompt": "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n"}]
    source = write_jsonl(tmp_path / "prompts.jsonl", rows)
    kept, _ = read_prompts(str(source), "train")
    renderer = PromptRenderer(smollm2_tokenizer)
    with pytest.raises(DataError, match=r"^prompts.jsonl, row 2: 'user' text holds '<\|im_start\|>', a control token"):
        check_lengths(kept, renderer, 1000, "prompts.jsonl")
    _, ids, _ = check_lengths(kept[:1], renderer, 1000, "prompts.jsonl")
    assert ids == [renderer.ids([{"role": "user", "content": "What is 2 + 3?"}])]


def test_prompts_without_a_prompt_column_are_refused(tmp_path):
    source = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Say hi."}])
    with pytest.raises(RecipeError, match=r"alpaca.jsonl: rows need a 'prompt' column .* its columns: \['instruction'\]"):
        read_prompts(str(source), "train")
