"""Pair datasets from their sources: a folder's splits, useless rows dropped and counted, a single
file's fraction, saved datasets and parquet files mixed, and errors that name the file and row."""

import logging

import pytest
from helpers import write_jsonl

from simpo.config.recipe import DataConfig
from simpo.data.dataset import build_pair_datasets
from simpo.data.encode import PairEncoder
from simpo.data.rows import DataError

GOOD = {"prompt": "q1", "chosen": "a", "rejected": "b"}


@pytest.fixture
def encoder(smollm2_tokenizer):
    return PairEncoder(smollm2_tokenizer, 128, 64)


def build(mixer: dict, encoder):
    return build_pair_datasets(DataConfig(dataset_mixer={str(source): fraction for source, fraction in mixer.items()}), encoder)


def test_a_folder_gives_its_train_and_test_splits(tmp_path, encoder):
    write_jsonl(tmp_path / "pairs" / "train.jsonl", [GOOD, {**GOOD, "prompt": "q2"}, {**GOOD, "prompt": "q3"}])
    write_jsonl(tmp_path / "pairs" / "test.jsonl", [{**GOOD, "prompt": "q4"}])
    train, test = build({tmp_path / "pairs": 1.0}, encoder)
    assert (len(train), len(test)) == (3, 1)


def test_useless_rows_are_dropped_and_counted_by_reason(tmp_path, encoder, caplog):
    rows = [GOOD, {"prompt": "q2", "chosen": "x", "rejected": "x"}, {**GOOD, "chosen": ""}, GOOD]
    write_jsonl(tmp_path / "pairs" / "train.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="simpo"):
        train, test = build({tmp_path / "pairs": 1.0}, encoder)
    assert len(train) == 2 and test is None
    assert "train: 2 pairs; dropped: 1 chosen identical to rejected, 1 empty response" in caplog.text


def test_a_single_file_serves_the_train_split_at_its_fraction(tmp_path, encoder):
    single = write_jsonl(tmp_path / "one.jsonl", [GOOD] * 10)
    train, test = build({single: 0.5}, encoder)
    assert len(train) == 5 and test is None


def test_a_saved_dataset_folder_gives_its_splits(tmp_path, encoder):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list([GOOD] * 3), "test": Dataset.from_list([GOOD])}).save_to_disk(tmp_path / "saved")
    train, test = build({tmp_path / "saved": 1.0}, encoder)
    assert (len(train), len(test)) == (3, 1)


def test_parquet_files_mix_with_other_sources(tmp_path, encoder):
    from datasets import Dataset

    Dataset.from_list([GOOD] * 2).to_parquet(tmp_path / "pq" / "train.parquet")
    write_jsonl(tmp_path / "jsonl" / "train.jsonl", [GOOD] * 3)
    write_jsonl(tmp_path / "jsonl" / "test.jsonl", [GOOD])
    assert len(build({tmp_path / "pq": 1.0}, encoder)[0]) == 2
    train, test = build({tmp_path / "pq": 1.0, tmp_path / "jsonl": 1.0}, encoder)
    assert (len(train), len(test)) == (5, 1)


def test_a_malformed_row_fails_naming_the_file_and_row(tmp_path, encoder):
    bad = write_jsonl(tmp_path / "bad.jsonl", [GOOD, GOOD, {"prompt": "q", "chosen": "a"}])
    with pytest.raises(DataError, match=f"{bad}, row 3: missing 'rejected'"):  # counted from 1, as the file's lines
        build({bad: 1.0}, encoder)


def test_a_missing_dataset_fails_naming_it(encoder):
    with pytest.raises(DataError, match="dataset ./missing.jsonl does not exist"):
        build({"./missing.jsonl": 1.0}, encoder)


def test_every_pair_keeps_its_source_and_row_counted_from_one(tmp_path, encoder, smollm2_tokenizer):
    """Through dropping, mixing and shuffling, a pair names the row it came from, as data errors do."""
    rows = [{**GOOD, "prompt": "q1"}, {"prompt": "q2", "chosen": "x", "rejected": "x"}, {**GOOD, "prompt": "q3"}]
    first = write_jsonl(tmp_path / "a.jsonl", rows)
    second = write_jsonl(tmp_path / "b.jsonl", [{**GOOD, "prompt": "q4"}])
    train, _ = build({first: 1.0, second: 1.0}, encoder)
    prompts = {(pair["source"], pair["row"]): smollm2_tokenizer.decode(pair["prompt_ids"]) for pair in train}
    assert sorted(prompts) == [(str(first), 1), (str(first), 3), (str(second), 1)]  # row 2 of a.jsonl was dropped
    for (source, row), prompt in prompts.items():
        assert f"q{row if source == str(first) else 4}" in prompt
