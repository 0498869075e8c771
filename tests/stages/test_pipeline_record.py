"""pipeline.json: an entry per run, a run left `running` (killed) marked `interrupted` by the next,
nothing written before a stage returns, and the card's totals summed over every run."""

import json

import pytest

from simpo.stages.pipeline_record import PipelineRecord, total_seconds

HOLDER = {"pid": 7, "host": "box", "command": "simpo pipeline r.yaml", "since": "2025-01-02T10:00:00+00:00"}


def test_the_next_run_marks_a_killed_run_interrupted_and_keeps_its_seconds(tmp_path):
    killed = {**HOLDER, "status": "running", "seconds": {"generate": 570.5}}
    (tmp_path / "pipeline.json").write_text(json.dumps({"runs": [killed]}))
    record = PipelineRecord(tmp_path, {**HOLDER, "pid": 8})
    assert record.timed("generate", lambda: "done") == "done"
    runs = json.loads((tmp_path / "pipeline.json").read_text())["runs"]
    assert runs[0] == {**killed, "status": "interrupted"}
    assert (runs[1]["pid"], runs[1]["status"], list(runs[1]["seconds"])) == (8, "running", ["generate"])


def test_a_stage_that_raises_is_timed_but_written_only_by_fail(tmp_path):
    def stopped():
        raise KeyboardInterrupt

    record = PipelineRecord(tmp_path, HOLDER)
    with pytest.raises(KeyboardInterrupt):
        record.timed("train", stopped)
    assert not (tmp_path / "pipeline.json").exists()
    record.fail(KeyboardInterrupt())
    [run] = json.loads((tmp_path / "pipeline.json").read_text())["runs"]
    assert (run["status"], run["failed_stage"], run["error"], list(run["seconds"])) == ("failed", "train", "KeyboardInterrupt", ["train"])


def test_finish_keeps_the_results_and_the_totals_sum_every_run(tmp_path):
    (tmp_path / "pipeline.json").write_text(json.dumps({"runs": [
        {**HOLDER, "status": "failed", "error": "RuntimeError: x", "seconds": {"generate": 300.0}},
    ]}))
    record = PipelineRecord(tmp_path, HOLDER)
    record.timed("generate", lambda: None)
    record.run["seconds"]["generate"] = 5.5  # a known time in place of the measured one
    record.timed("train", lambda: None)
    record.run["seconds"]["train"] = 30.0
    record.finish({"before": {"accuracy": 0.25}, "after": {"accuracy": 0.5}})
    saved = json.loads((tmp_path / "pipeline.json").read_text())
    assert [run["status"] for run in saved["runs"]] == ["failed", "finished"]
    assert (saved["before"], saved["after"]) == ({"accuracy": 0.25}, {"accuracy": 0.5})
    assert total_seconds(saved) == {"generate": 305.5, "train": 30.0}
    assert total_seconds({}) == {}
