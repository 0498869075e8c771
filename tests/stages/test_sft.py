"""`simpo sft` end to end on the bundled SmolLM2: a model folder that `simpo train` takes as its model."""

import errno
import json
import math
from pathlib import Path

import pytest
import yaml
from helpers import REPO, write_jsonl

from simpo.cli import main
from simpo.data.bundled import make_conversations


def test_sft_writes_a_model_that_simpo_train_takes(tmp_path, one_thread):
    data = tmp_path / "talk"
    write_jsonl(data / "train.jsonl", make_conversations(6, seed=5))
    write_jsonl(data / "test.jsonl", make_conversations(2, seed=6))
    sft = {
        "model_name_or_path": "smollm2-135m-instruct", "torch_dtype": "float32", "dataset_mixer": {str(data): 1.0},
        "max_seq_length": 64, "per_device_train_batch_size": 1, "per_device_eval_batch_size": 2, "max_steps": 1,
        "learning_rate": 1e-5, "eval_strategy": "steps", "eval_steps": 1, "save_strategy": "no", "report_to": "none",
        "disable_tqdm": True, "output_dir": str(tmp_path / "sft"),
    }
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(sft))
    assert main(["sft", str(tmp_path / "sft.yaml")]) == 0
    out = tmp_path / "sft"
    assert {"config.json", "model.safetensors", "tokenizer.json", "recipe.yaml", "run_info.json", "trainer_state.json"} <= {p.name for p in out.iterdir()}
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert math.isfinite(next(entry["loss"] for entry in history if "loss" in entry))
    assert math.isfinite(next(entry["eval_loss"] for entry in history if "eval_loss" in entry))
    assert json.loads((out / "run_info.json").read_text())["hyperparameters"]["max_seq_length"] == 64

    train = {
        "model_name_or_path": str(out), "dataset_mixer": {str(REPO / "data" / "verifiable-prefs"): 0.002}, "dataset_splits": ["train"],
        "max_length": 48, "max_prompt_length": 24, "per_device_train_batch_size": 1, "max_steps": 1, "learning_rate": 1e-6, "logging_steps": 1,
        "eval_strategy": "no", "save_strategy": "no", "report_to": "none", "disable_tqdm": True, "output_dir": str(tmp_path / "simpo"),
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    assert main(["train", str(tmp_path / "train.yaml")]) == 0
    history = json.loads((tmp_path / "simpo" / "trainer_state.json").read_text())["log_history"]
    assert math.isfinite(next(entry["rewards/accuracies"] for entry in history if "rewards/accuracies" in entry))


def _tiny_sft(tiny_model_dir, tmp_path, **extra) -> Path:
    data = tmp_path / "talk"
    write_jsonl(data / "train.jsonl", make_conversations(4, seed=5))
    sft = {
        "model_name_or_path": str(tiny_model_dir("llama")), "torch_dtype": "float32", "dataset_mixer": {str(data): 1.0},
        "dataset_splits": ["train"], "max_seq_length": 64, "per_device_train_batch_size": 2, "max_steps": 2,
        "learning_rate": 1e-3, "eval_strategy": "no", "save_strategy": "steps", "save_steps": 1, "report_to": "none",
        "disable_tqdm": True, "output_dir": str(tmp_path / "sft"), **extra,
    }
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(sft))
    return tmp_path / "sft.yaml"


def test_a_save_cut_short_leaves_a_folder_no_command_takes_for_a_model(tiny_model_dir, tmp_path, one_thread, monkeypatch, capsys):
    recipe = _tiny_sft(tiny_model_dir, tmp_path, save_strategy="no")
    out = tmp_path / "sft"

    def disk_full(*args, **kwargs):  # the model and tokenizer written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left"):
        patch.setattr("simpo.stages.sft.write_run_info", disk_full)
        main(["sft", str(recipe)])
    assert {"INCOMPLETE", "model.safetensors", "tokenizer.json"} <= {path.name for path in out.iterdir()}
    capsys.readouterr()
    assert main(["chat", str(out), "--prompt", "hi", "--max-new-tokens", "2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"simpo: error: {out} is not a whole model: simpo began saving it and never finished (its INCOMPLETE file is there: "
        "a full disk or a kill during the save); run the command that made it again to save it whole, or use another model"]
    assert main(["sft", str(recipe)]) == 0
    assert "INCOMPLETE" not in {path.name for path in out.iterdir()}


def test_another_recipe_is_refused_in_a_finished_run_and_the_same_one_resumes(tiny_model_dir, tmp_path, one_thread, capsys, caplog):
    recipe = _tiny_sft(tiny_model_dir, tmp_path)
    out = tmp_path / "sft"
    assert main(["sft", str(recipe)]) == 0
    before = {str(path.relative_to(out)): path.stat().st_mtime_ns for path in out.rglob("*")}
    capsys.readouterr()
    assert main(["sft", str(recipe), "--learning_rate", "1e-4"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"simpo: error: output_dir {out} holds a run made with another recipe (learning_rate: 0.001 -> 0.0001); use another "
        "output_dir, or delete this one (or move it away) to start over"]
    assert {str(path.relative_to(out)): path.stat().st_mtime_ns for path in out.rglob("*")} == before
    assert yaml.safe_load((out / "recipe.yaml").read_text())["learning_rate"] == 1e-3
    # Only logging differently, and overwrite_output_dir (which the official SFT recipes set): the same run, resumed.
    assert main(["sft", str(recipe), "--logging_steps", "2", "--overwrite_output_dir", "true"]) == 0
    assert f"resuming from {out / 'checkpoint-2'}" in caplog.text
