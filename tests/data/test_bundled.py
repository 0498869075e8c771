"""The bundled data: the committed conversations are what their generator writes, and they hold
what `simpo sft` needs."""

import pytest
from helpers import REPO, read_jsonl

from simpo.data.bundled import make_prompts, write_conversations


def test_the_committed_conversations_are_the_generators(tmp_path):
    folder = write_conversations(tmp_path)
    for split in ("train", "test"):
        assert (folder / f"{split}.jsonl").read_text() == (REPO / "data" / "verifiable-conversations" / f"{split}.jsonl").read_text()
    test_questions = {turn["content"] for row in read_jsonl(folder / "test.jsonl") for turn in row["messages"] if turn["role"] == "user"}
    train_rows = read_jsonl(folder / "train.jsonl")
    assert not any(turn["content"] in test_questions for row in train_rows for turn in row["messages"])
    assert {len(row["messages"]) for row in train_rows} == {2, 3, 4, 5, 6, 7}  # one to three exchanges, a system message or not


def test_make_prompts_stops_with_an_error_when_the_tasks_run_out_of_questions():
    # times_table: 11 x 11 operand pairs in 2 phrasings; small_sum: 40 x 8; small_difference: 20 x 8.
    every = 11 * 11 * 2 + 40 * 8 + 20 * 8
    assert len({row["prompt"] for row in make_prompts(every, seed=0)}) == every
    with pytest.raises(ValueError, match=f"{every + 1} distinct prompts asked for, but only {every} are left"):
        make_prompts(every + 1, seed=0)
