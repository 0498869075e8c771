"""An output_dir holding a run: the same recipe resumes it (keys that only log, save or speed up may
differ), another recipe is refused before anything is written, naming each difference, and
`overwrite_output_dir: true` moves the old run aside and starts over."""

from __future__ import annotations

import json
import logging

import pytest
import yaml
from helpers import recipe_values, write_jsonl

from simpo.cli import main
from simpo.data.bundled import make_rows
from simpo.errors import RecipeError
from simpo.training.run_folder import check_output_dir, recipe_differences


def test_a_key_left_out_is_its_default_and_only_result_keys_count():
    old = {"model_name_or_path": "m", "beta": 2.0, "learning_rate": 1e-3, "logging_steps": 1, "output_dir": "a"}
    assert recipe_differences(old, {"model_name_or_path": "m", "learning_rate": 1e-3, "logging_steps": 5, "output_dir": "b",
                                    "padding_free": False, "on_nonfinite": "skip"}) == []
    new = {"model_name_or_path": "m", "loss_type": "dpo", "learning_rate": 2e-3, "dataset_splits": ["train"]}
    assert recipe_differences(old, new) == [
        ("loss_type", "simpo", "dpo"), ("learning_rate", 1e-3, 2e-3), ("dataset_splits", ["train", "test"], ["train"]),
        ("beta", 2.0, 0.1),  # each side's loss default where a recipe leaves its loss key out
    ]


def test_a_run_whose_recipe_is_unknown_is_refused(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(RecipeError, match="holds a run without a readable recipe.yaml, so whether it was made with this "
                                          "recipe cannot be told; use another output_dir, or set overwrite_output_dir: true"):
        check_output_dir(tmp_path, {"learning_rate": 1e-3}, overwrite=False)
    check_output_dir(tmp_path, {"learning_rate": 1e-3}, overwrite=True)
    check_output_dir(tmp_path / "empty", {"learning_rate": 1e-3}, overwrite=False)


def _snapshot(folder) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(folder.rglob("*"))}


@pytest.mark.usefixtures("one_thread")
def test_same_recipe_resumes_another_is_refused_and_overwrite_starts_over(tiny_model_dir, tmp_path, caplog, capsys):
    folder = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs" / "train.jsonl", make_rows(8, seed=5)).parent
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_values(folder, data, out, per_device_train_batch_size=2, max_steps=4,
                                                   save_strategy="steps", save_steps=2)))
    assert main(["train", str(recipe)]) == 0
    first = _snapshot(out)

    # Another learning rate: refused in one line naming it, and nothing in the folder touched.
    capsys.readouterr()
    assert main(["train", str(recipe), "--learning_rate", "1e-3"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"simpo: error: output_dir {out} holds a run made with another recipe (learning_rate: 0.003 -> 0.001); use another "
        f"output_dir, or set overwrite_output_dir: true to start over (the old run is then moved to {out}.previous-1)"]
    assert _snapshot(out) == first

    # Logging and saving differently is the same run: it resumes from the newest checkpoint.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="simpo"):
        assert main(["train", str(recipe), "--logging_steps", "2", "--save_steps", "3"]) == 0
    assert f"resuming from {out / 'checkpoint-4'}" in caplog.text
    assert yaml.safe_load((out / "recipe.yaml").read_text())["logging_steps"] == 2

    # overwrite_output_dir: the old run moves aside whole, and the new one starts from step 1.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="simpo"):
        assert main(["train", str(recipe), "--learning_rate", "1e-3", "--overwrite_output_dir", "true"]) == 0
    aside = tmp_path / "out.previous-1"
    assert f"overwrite_output_dir: moved the previous run in {out} to {aside}" in caplog.text
    assert "resuming from" not in caplog.text
    assert yaml.safe_load((aside / "recipe.yaml").read_text())["learning_rate"] == 0.003
    assert {"checkpoint-2", "checkpoint-4", "model.safetensors"} <= {path.name for path in aside.iterdir()}
    assert yaml.safe_load((out / "recipe.yaml").read_text())["learning_rate"] == 0.001
    state = json.loads((out / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3, 4]
    assert all(entry["learning_rate"] == 0.001 for entry in state["log_history"] if "loss" in entry)
    assert sorted(path.name for path in out.iterdir() if path.name.startswith("checkpoint-")) == ["checkpoint-2", "checkpoint-4"]


def test_overwrite_never_moves_the_current_folder_a_folder_holding_it_or_files_no_run_writes(tmp_path, monkeypatch, capsys):
    from simpo.models.card import MARKER
    from simpo.training.run_folder import check_movable

    project = tmp_path / "project"
    (project / "checkpoint-2").mkdir(parents=True)
    (project / "recipe.yaml").write_text(yaml.safe_dump({"learning_rate": 1e-3}))
    (project / "work").mkdir()
    (project / "work" / "recipe.yaml").write_text(yaml.safe_dump(recipe_values("smollm2-135m-instruct", "pairs", "..")))
    before = _snapshot(project)
    monkeypatch.chdir(project / "work")
    assert main(["train", "recipe.yaml", "--overwrite_output_dir", "true"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"simpo: error: output_dir .. is a folder holding the current one ({project / 'work'}): overwrite_output_dir would "
        "move it aside with everything in it; give the run a folder of its own (output_dir: NAME)"]
    assert _snapshot(project) == before and not (tmp_path / "project.previous-1").exists()

    # What a run writes (a README.md only when simpo card or a library wrote it) may move; anything else may not.
    monkeypatch.chdir(tmp_path)
    (project / "work" / "recipe.yaml").unlink()
    (project / "work").rmdir()
    for name in ("model.safetensors", "tokenizer.json", "run_info.json", "training_curves.png"):
        (project / name).write_text("x")
    (project / "README.md").write_text(f"---\nlicense: other\n---\n\n{MARKER}\n\n# project\n")
    check_movable(project)
    (project / "README.md").write_text("# My project\n")
    with pytest.raises(RecipeError, match=r"holds files that no training run writes \(README.md\)"):
        check_movable(project)
