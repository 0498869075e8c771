"""Stage folders that are never trusted blindly: a manifest with no output yet takes new settings."""

from __future__ import annotations

import json

from helpers import read_jsonl

from simpo.cli import main
from simpo.data.bundled import make_prompts
from simpo.stages.shards import MANIFEST, ShardedOutput


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

