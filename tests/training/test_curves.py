"""Training curves: a real training run leaves a PNG beside trainer_state.json, drawn from the values
its log holds; a log missing a metric still draws, an empty log draws nothing and says so."""

import json
import struct

import pytest
import yaml
from helpers import recipe_values, write_jsonl

from simpo.cli import main
from simpo.data.bundled import make_rows
from simpo.training.curves import extract_series, write_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, size=(1300, 750)):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert struct.unpack(">II", data[16:24]) == size  # IHDR: width, height (13 x 7.5 inches at 100 dpi)


@pytest.mark.usefixtures("one_thread")
def test_a_training_run_writes_curves_of_what_it_logged(tiny_model_dir, tmp_path):
    data = tmp_path / "pairs"
    write_jsonl(data / "train.jsonl", make_rows(16, seed=5))
    write_jsonl(data / "test.jsonl", make_rows(4, seed=6))
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_values(tiny_model_dir("gemma2"), data, out, max_steps=4, do_eval=True,
                                                   eval_strategy="steps", eval_steps=2)))
    assert main(["train", str(recipe)]) == 0

    assert_png(out / "training_curves.png")
    log = json.loads((out / "trainer_state.json").read_text())["log_history"]
    series = extract_series(log)
    for key in ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "lengths/chosen", "lengths/rejected",
                "learning_rate", "grad_norm"):
        logged = [(entry["step"], entry[key]) for entry in log if key in entry]
        assert [entry[0] for entry in logged] == [1, 2, 3, 4]
        assert list(zip(*series[key])) == logged
    evaluated = [(entry["step"], entry["eval_rewards/margins"]) for entry in log if "eval_rewards/margins" in entry]
    assert [step for step, _ in evaluated] == [0, 2, 4, 4]  # before training, every 2 steps, and after
    assert list(zip(*series["eval_rewards/margins"])) == evaluated
    assert "eval_runtime" not in series and "train_loss" not in series  # only what the panels draw


def test_a_log_without_a_metric_still_draws_and_an_empty_log_draws_nothing(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    log = [{"step": step, "loss": 0.7 - 0.1 * step, "learning_rate": 1e-3} for step in (1, 2, 3)]
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": log}))
    assert write_curves(run) == run / "training_curves.png"
    assert_png(run / "training_curves.png")
    assert set(extract_series(log)) == {"loss", "learning_rate"}

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "trainer_state.json").write_text(json.dumps({"global_step": 0, "log_history": [{"step": 0, "train_runtime": 1.0}]}))
    assert write_curves(empty) is None
    assert not (empty / "training_curves.png").exists()
    assert f"no training curves: {empty / 'trainer_state.json'} logs none of loss" in caplog.text
    assert write_curves(tmp_path / "nowhere") is None
