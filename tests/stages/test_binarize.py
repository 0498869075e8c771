"""Binarize: the best and the worst scored response as a pair, in the layout `simpo train` reads;
ties, identical texts and small gaps dropped with their reason."""

from simpo.data.rows import read_pair
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
