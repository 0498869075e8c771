"""`simpo sweep` on a tiny random Llama: each trial is the `simpo train` run of its settings (weights
equal, in this process and as its own process), the table holds each trial's last evaluation, a
second run trains only what was not finished, the pairs are tokenized and a reference loss's
reference computed once, and a pipeline recipe's trials answer the held-out prompts. Bad command
lines: tests/corpus/commands.py."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from helpers import recipe_values, write_jsonl, write_prompts
from safetensors.torch import load_file

from simpo.cli import main
from simpo.data.bundled import make_rows
from simpo.stages.shards import mark_complete

GRID = ("--learning_rate", "1e-3,3e-3", "--beta", "2,4")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def recipe(tiny_model_dir, tmp_path_factory):
    """A training recipe on 16 bundled pairs (4 held out): 2 steps of 4 pairs, a checkpoint after each."""
    folder = tmp_path_factory.mktemp("sweep-recipe")
    write_jsonl(folder / "pairs" / "train.jsonl", make_rows(16, seed=5))
    write_jsonl(folder / "pairs" / "test.jsonl", make_rows(4, seed=6))
    values = recipe_values(tiny_model_dir("llama"), folder / "pairs", folder / "unused", max_steps=2, save_strategy="steps", save_steps=1)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def swept(recipe, tmp_path_factory):
    """The 2 x 2 sweep of GRID: its folder."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    assert main(["sweep", str(recipe), "--output_dir", str(out), *GRID]) == 0
    return out


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def assert_same_weights(folder, other) -> None:
    mine, theirs = weights(folder), weights(other)
    assert mine.keys() == theirs.keys()
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("learning_rate, beta", [("1e-3", "2"), ("3e-3", "4")])
def test_a_trial_is_the_simpo_train_run_of_its_settings(recipe, swept, tmp_path, learning_rate, beta):
    single = tmp_path / "single"
    assert main(["train", str(recipe), "--output_dir", str(single), "--learning_rate", learning_rate, "--beta", beta]) == 0
    trial = swept / f"trial-learning_rate={learning_rate}-beta={beta}"
    assert_same_weights(trial, single)
    assert yaml.safe_load((trial / "recipe.yaml").read_text())["beta"] == float(beta)


def test_the_table_holds_each_trials_last_evaluation(swept):
    names = sorted(path.name for path in swept.glob("trial-*"))
    assert names == ["trial-learning_rate=1e-3-beta=2", "trial-learning_rate=1e-3-beta=4",
                     "trial-learning_rate=3e-3-beta=2", "trial-learning_rate=3e-3-beta=4"]
    report = (swept / "sweep.md").read_text()
    assert "    simpo sweep " in report and " --learning_rate 1e-3,3e-3 --beta 2,4" in report
    rows = {line.split(" | ")[0].removeprefix("| "): line.split(" | ") for line in report.splitlines() if line.startswith("| trial-")}
    assert sorted(rows) == names
    header = next(line for line in report.splitlines() if line.startswith("| trial |")).removesuffix(" |").split(" | ")
    assert header[:8] == ["| trial", "learning_rate", "beta", "train loss", "eval loss", "reward acc", "reward margin", "train s"]
    for name in names:
        history = json.loads((swept / name / "trainer_state.json").read_text())["log_history"]
        last = [entry for entry in history if "eval_loss" in entry][-1]
        assert last["step"] == 2  # after training, not the step-0 evaluation
        cells = rows[name]
        assert float(cells[4]) == pytest.approx(last["eval_loss"], abs=5e-5)
        assert float(cells[5]) == pytest.approx(last["eval_rewards/accuracies"], abs=5e-5)
        assert float(cells[6]) == pytest.approx(last["eval_rewards/margins"], abs=5e-5)
    assert (swept / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_run_trains_only_the_unfinished_trial_which_resumes(recipe, tmp_path, caplog):
    out = tmp_path / "out"
    command = ["sweep", str(recipe), "--output_dir", str(out), "--learning_rate", "1e-3", "--beta", "2,4"]
    assert main(command) == 0
    finished, killed = out / "trial-beta=2", out / "trial-beta=4"
    stamp, whole = (finished / "model.safetensors").stat().st_mtime_ns, weights(killed)
    # What a kill after trial-beta=4's first checkpoint leaves: that checkpoint and its recipe.
    for path in killed.iterdir():
        if path.name not in ("checkpoint-1", "recipe.yaml"):
            path.unlink() if path.is_file() else shutil.rmtree(path)
    caplog.clear()
    assert main(command) == 0
    assert "sweep: 1 of 2 trials finished already, 1 to train" in caplog.text
    assert f"resuming from {killed / 'checkpoint-1'}" in caplog.text
    assert (finished / "model.safetensors").stat().st_mtime_ns == stamp
    for name, tensor in whole.items():
        torch.testing.assert_close(weights(killed)[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_trials_as_processes_are_the_trials_of_this_process(recipe, swept, tmp_path):
    out = tmp_path / "out"
    assert main(["sweep", str(recipe), "--output_dir", str(out), "--learning_rate", "1e-3", "--beta", "2,4", "--processes", "2"]) == 0
    for beta in ("2", "4"):
        assert (out / f"trial-beta={beta}" / "COMPLETE").is_file()
        assert "held-out pairs: 4" in (out / f"trial-beta={beta}.log").read_text()  # what simpo train prints at its end
        assert_same_weights(out / f"trial-beta={beta}", swept / f"trial-learning_rate=1e-3-beta={beta}")


def test_the_pairs_and_a_reference_losss_reference_are_computed_once_for_all_trials(recipe, tmp_path, cache_in_tmp, caplog):
    out = tmp_path / "out"
    changes = ["--loss_type", "dpo", "--max_steps", "1", "--save_strategy", "no"]
    assert main(["sweep", str(recipe), "--output_dir", str(out), "--beta", "0.1,0.2", *changes]) == 0
    assert caplog.text.count("train: 16 pairs; dropped: none") == 1  # what tokenizing the pairs logs
    assert caplog.text.count("train: computed the reference log-probs of 16 pairs") == 1
    assert caplog.text.count("train: reusing the cached reference log-probs of 16 pairs") == 1


def test_a_pipeline_recipes_trials_answer_the_held_out_prompts(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    write_jsonl(run / "pairs" / "train.jsonl", make_rows(8, seed=5))
    write_jsonl(run / "pairs" / "test.jsonl", make_rows(4, seed=6))
    mark_complete(run / "pairs")  # as binarize leaves its pairs
    values = recipe_values(tiny_model_dir("llama"), "unused", "unused", max_steps=1)
    del values["dataset_mixer"], values["output_dir"]
    prompts = write_prompts(tmp_path / "prompts", train=4, test=3)
    values.update(run_dir=str(run), generate={"prompts": str(prompts), "seeds": [1, 2]}, annotate={"rewards": [{"type": "numeric_answer"}]},
                  evaluate={"max_new_tokens": 8}, eval={"benchmarks": []})
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(values))
    assert main(["sweep", str(path), "--beta", "2,4"]) == 0
    printed = capsys.readouterr().out
    for beta in ("2", "4"):
        summary = json.loads((run / "sweep" / "eval" / f"trial-beta={beta}.json").read_text())
        assert summary["model"] == str(run / "sweep" / f"trial-beta={beta}") and summary["prompts"] == 3
        line = next(line for line in printed.splitlines() if line.startswith(f"| trial-beta={beta} |")).split(" | ")
        assert float(line[-4]) == pytest.approx(summary["accuracy"], abs=5e-5)  # held-out acc, answer len, repeats, train s
        assert float(line[-3]) == pytest.approx(summary["mean_length_tokens"], abs=0.05)


def test_dry_run_lists_the_trials_and_writes_nothing(recipe, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(recipe), "--output_dir", str(out), *GRID, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"simpo sweep: 4 trials into {out}; learning_rate: 1e-3, 3e-3; beta: 2, 4\n"
                              "  trial-learning_rate=1e-3-beta=2\n  trial-learning_rate=1e-3-beta=4\n")
    assert json.loads(printed[printed.index("{"):])["training"]["output_dir"] == str(out / "trial-learning_rate=1e-3-beta=2")
    assert not out.exists()
