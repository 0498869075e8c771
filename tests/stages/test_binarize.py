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


def _scored(truncated=True):
    """Two hand-written prompts: p0's longest responses hit the token limit, p1's scores tie."""
    rows = [
        {"prompt_id": "p0", "prompt": "Q0?", "all_generated_responses": ["a", "bb", "ccc", "dddd"], "all_rm_scores": [1, 3, 0, 2],
         "response_tokens": [1, 2, 8, 8], "truncated": [False, False, True, True]},
        {"prompt_id": "p1", "prompt": "Q1?", "all_generated_responses": ["e", "f", "g", "h"], "all_rm_scores": [1, 1, 1, 1],
         "response_tokens": [3, 3, 3, 3], "truncated": [False, False, False, True]},
    ]
    if not truncated:  # a folder generated before simpo recorded truncation
        rows = [{k: v for k, v in row.items() if k not in ("response_tokens", "truncated")} for row in rows]
    return rows


def test_binarize_counts_truncated_responses_and_the_pairs_lengths():
    from collections import Counter

    from simpo.stages.binarize import pair_stats, stats_line

    rows = _scored()
    pairs = [binarize_row(rows[0])]  # chosen bb (2 tokens), rejected ccc (8 tokens, truncated)
    stats = pair_stats(rows, pairs, Counter({"all scores tie": 1}))
    assert stats == {"prompts": 2, "pairs": 1, "pair_share": 0.5, "dropped": {"all scores tie": 1}, "responses": 8,
                     "mean_score": 10 / 8, "truncated": 3, "length_unit": "tokens", "chosen_length": 2.0, "rejected_length": 8.0}
    assert stats_line(stats) == ("binarize: 1 pairs from 2 prompts (50%); mean score 1.250 over 8 responses, 3 (37.5%) hit the "
                                 "token limit without a stop token; mean length chosen 2.0, rejected 8.0 tokens")
    old = pair_stats(_scored(truncated=False), pairs, Counter())
    assert (old["truncated"], old["length_unit"], old["chosen_length"], old["rejected_length"]) == (None, "characters", 2.0, 3.0)


def test_drop_truncated_pairs_only_the_responses_that_ended():
    rows = _scored()
    pair = binarize_row(rows[0], drop_truncated=True)  # ccc and dddd left out: bb (3) against a (1)
    assert (pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]) == ("bb", "a")
    assert binarize_row(rows[0]) != pair  # kept, ccc (0) is the rejected one
    two_cut = {**rows[1], "all_rm_scores": [1, 2, 3, 4], "truncated": [True, False, True, True]}
    assert binarize_row(two_cut, drop_truncated=True) == "fewer than two responses ended before the token limit"
    with pytest.raises(RecipeError, match="binarize.drop_truncated: prompt p0 has no record of which responses hit the token limit"):
        binarize_row(_scored(truncated=False)[0], drop_truncated=True)


def test_run_binarize_writes_its_stats_beside_the_pairs(tmp_path):
    import json

    from helpers import write_jsonl

    from simpo.config.pipeline import BinarizeConfig
    from simpo.stages.binarize import run_binarize
    from simpo.stages.shards import mark_complete

    write_jsonl(tmp_path / "scores" / "shard-00000.jsonl", _scored())
    mark_complete(tmp_path / "scores")
    run_binarize(BinarizeConfig(input=str(tmp_path / "scores"), test_size=0, output=str(tmp_path / "pairs"), drop_truncated=True))
    stats = json.loads((tmp_path / "pairs" / "stats.json").read_text())
    assert (stats["pairs"], stats["truncated"], stats["chosen_length"], stats["rejected_length"]) == (1, 3, 2.0, 1.0)
    assert json.loads((tmp_path / "pairs" / "manifest.json").read_text())["drop_truncated"] is True
