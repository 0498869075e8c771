"""Stage folders that are never trusted blindly: a manifest with no output yet takes new settings, a
shard that does not hold its rows is written again, and a shard of a COMPLETE stage that is not the
file its stage wrote is refused in one line naming it, never read."""

from __future__ import annotations

import json

from helpers import read_jsonl

from simpo.cli import main
from simpo.data.bundled import make_prompts
from simpo.stages.shards import COMPLETE, MANIFEST, ShardedOutput


def _generations(folder, count: int = 5, shard_size: int = 2) -> list[dict]:
    """A complete generate stage folder, written by the real shard writer: `count` prompts, two responses each."""
    rows = [{"prompt_id": str(i), "prompt": row["prompt"], "answer": row["answer"], "row": i, "seeds": [1, 2],
             "all_generated_responses": [f"It is {row['answer']}.", "It is 0."]} for i, row in enumerate(make_prompts(count, seed=3))]
    output = ShardedOutput(folder, {"stage": "generate"}, len(rows), shard_size)
    for index in output.pending():
        output.write(index, [rows[i] for i in output.shard_rows(index)])
    output.mark_complete()
    return rows


def _annotate(tmp_path, rewards: str, output: str = "scores") -> list[str]:
    return ["annotate", "--model_name_or_path", "smollm2-135m-instruct", "--annotate.input", str(tmp_path / "generations"), "--annotate.output", str(tmp_path / output),
            "--annotate.shard_size", "2", "--annotate.rewards", rewards]


def test_a_stage_that_failed_before_its_first_shard_takes_the_corrected_settings(tiny_model_dir, tmp_path, capsys):
    _generations(tmp_path / "generations")
    # A causal LM is refused as a reward model once the stage has claimed its folder, before any shard.
    assert main(_annotate(tmp_path, f"[{{type: reward_model, model: {tiny_model_dir('llama')}}}]")) == 2
    assert "is not a sequence classifier" in capsys.readouterr().err
    assert {path.name for path in (tmp_path / "scores").iterdir()} == {MANIFEST}
    # The corrected rerun takes the new settings instead of refusing "output made with other settings".
    assert main(_annotate(tmp_path, "[{type: numeric_answer}]")) == 0
    assert json.loads((tmp_path / "scores" / MANIFEST).read_text())["rewards"] == [{"type": "numeric_answer"}]
    assert [row["all_rm_scores"] for path in sorted((tmp_path / "scores").glob("shard-*")) for row in read_jsonl(path)] == [[1.0, 0.0]] * 5
    # Once a shard is written, other settings are refused as before.
    capsys.readouterr()
    assert main(_annotate(tmp_path, "[{type: numeric_answer, weight: 2}]")) == 2
    assert "holds output made with other settings" in capsys.readouterr().err


def test_a_complete_shard_cut_in_half_is_refused_in_one_line_then_written_again(tmp_path, capsys):
    rows = _generations(tmp_path / "generations")
    assert json.loads((tmp_path / "generations" / COMPLETE).read_text())["files"]["shard-00001.jsonl"]["bytes"] > 0
    shard = tmp_path / "generations" / "shard-00001.jsonl"
    text = shard.read_text()
    for cut in (text[: len(text) // 2], text[: text.index("\n") + 1]):  # mid-line, and at a line's end (one row lost)
        shard.write_text(cut)
        assert main(_annotate(tmp_path, "[{type: numeric_answer}]")) == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [f"simpo: error: {shard} is not the file its stage wrote ({len(cut)} bytes, {len(text)} when "
                                    "the stage finished): delete it and run its stage again, which writes it anew"]
        assert not (tmp_path / "scores").exists()
    # The stage run again finds the shard short of its rows and writes it again (here the same rows).
    output = ShardedOutput(tmp_path / "generations", {"stage": "generate"}, len(rows), 2)
    assert output.pending() == [1]
    output.write(1, rows[2:4])
    output.mark_complete()
    assert main(_annotate(tmp_path, "[{type: numeric_answer}]")) == 0


def test_a_folder_written_before_complete_recorded_sizes_still_reads_and_is_checked(tmp_path, capsys):
    _generations(tmp_path / "generations")
    (tmp_path / "generations" / COMPLETE).write_text("")  # as the stages wrote it before
    assert main(_annotate(tmp_path, "[{type: numeric_answer}]")) == 0
    capsys.readouterr()
    shard = tmp_path / "generations" / "shard-00000.jsonl"
    text = shard.read_text()
    shard.write_text(text[: len(text) // 2])
    assert main(_annotate(tmp_path, "[{type: numeric_answer}]", "scores2")) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"simpo: error: {shard}, line 1: not a whole JSON row, so the file is damaged (cut short or edited); delete it and "
        "run the stage that wrote it again"]
    shard.write_text(text[: text.index("\n") + 1])  # one whole row of two: the manifest's row count tells
    assert main(_annotate(tmp_path, "[{type: numeric_answer}]", "scores3")) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"simpo: error: {tmp_path / 'generations'} holds 4 rows, not the 5 its stage wrote (a shard is cut short or missing); "
        "delete its shard files and run its stage again"]
