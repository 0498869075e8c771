"""Binarize: the best and the worst scored response as a pair, in the layout `simpo train` reads;
ties, identical texts and small gaps dropped with their reason."""

import pytest

from simpo.data.rows import read_pair
from simpo.errors import RecipeError
from simpo.stages.binarize import binarize_row


def test_binarize_takes_best_and_worst_and_drops_ties():
    row = {"prompt_id": "p", "prompt": "Q?", "all_generated_responses": ["a", "b", "c", "d"], "all_rm_scores": [0.5, 2.0, -1.0, 2.0]}
    pair = binarize_row(row)
    assert pair["chosen"] == [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "b"}]
    assert pair["rejected"][-1]["content"] == "c"
    read = read_pair(pair, "row 0")  # the layout `simpo train` reads
    assert read.prompt == [{"role": "user", "content": "Q?"}] and read.chosen["content"] == "b"
    assert binarize_row({**row, "all_rm_scores": [1, 1, 1, 1]}) == "all scores tie"
    assert binarize_row({**row, "all_generated_responses": ["x", "x ", "x", "x"]}) == "best and worst responses identical"
    assert binarize_row(row, min_score_gap=3.5) == "score gap below min_score_gap"


def _scores(folder, prompts: int):
    """A complete scores folder: prompt k's responses score 0..3, so every prompt makes a pair."""
    from helpers import write_jsonl

    from simpo.stages.shards import mark_complete

    write_jsonl(folder / "shard-00000.jsonl", [
        {"prompt_id": f"p{k}", "prompt": f"Q{k}?", "all_generated_responses": ["a", "b", "c", "d"], "all_rm_scores": [0, 1, 2, 3]}
        for k in range(prompts)
    ])
    mark_complete(folder)
    return folder


def test_no_held_out_pair_writes_no_test_split_and_training_reads_none(tmp_path):
    from simpo.config.pipeline import BinarizeConfig
    from simpo.data.sources import load_split
    from simpo.stages.binarize import run_binarize

    out = run_binarize(BinarizeConfig(input=str(_scores(tmp_path / "scores", 6)), test_size=0, output=str(tmp_path / "pairs")))
    assert sorted(path.name for path in (tmp_path / "pairs").glob("*.jsonl")) == ["train.jsonl"]
    assert len(load_split(out, "train")[1]) == 6 and load_split(out, "test") is None


@pytest.mark.parametrize("test_size", [6, 0.95])
def test_holding_out_every_pair_is_refused(test_size, tmp_path):
    from simpo.config.pipeline import BinarizeConfig
    from simpo.stages.binarize import run_binarize

    config = BinarizeConfig(input=str(_scores(tmp_path / "scores", 6)), test_size=test_size, output=str(tmp_path / "pairs"))
    with pytest.raises(RecipeError, match=rf"binarize.test_size \({test_size:g}\) holds out all 6 pairs"):
        run_binarize(config)
    assert not (tmp_path / "pairs").exists()


def test_a_complete_output_cut_short_is_written_again(tmp_path):
    from simpo.config.pipeline import BinarizeConfig
    from simpo.stages.binarize import run_binarize

    config = BinarizeConfig(input=str(_scores(tmp_path / "scores", 6)), test_size=2, output=str(tmp_path / "pairs"))
    run_binarize(config)
    train = tmp_path / "pairs" / "train.jsonl"
    whole = train.read_text()
    train.write_text(whole[: whole.index("\n") + 1])  # one pair of four left, each line whole
    run_binarize(config)
    assert train.read_text() == whole
