"""Several processes: two gloo processes train as one process with gradient accumulation 2 does (SimPO,
and DPO with a cached reference), one process writes, the reference is computed once, KTO's reference
point spans both processes, the group_by_length order is dealt out whole; and `--nproc`'s command line.

One launch of two processes (`two_processes.py`) serves every test of the module."""

from __future__ import annotations

import json
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, recipe_values, write_jsonl
from safetensors.torch import load_file

from simpo.cli import main
from simpo.data.bundled import make_rows
from simpo.training.launch import launch_command

# `--nproc`'s launcher, in a process of its own (as the `simpo` command runs it) so that its output can be read.
RUNNER = "import sys; from simpo.training.launch import run_processes; sys.exit(run_processes(int(sys.argv[1]), sys.argv[2:]))"
STEP_KEYS = ("loss", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
             "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected")


def _recipe(work: Path, name: str, folder: Path, **extra) -> Path:
    # 8 pairs, 2 epochs: 4 optimizer steps of 4 pairs; the second epoch in another order.
    values = recipe_values(folder, work / "pairs", work / "runs" / name, per_device_train_batch_size=2,
                           per_device_eval_batch_size=2, num_train_epochs=2, **extra)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """Two processes' run (SimPO, then DPO with its reference cached), then one process's with
    accumulation 2 at the same global batch of 4 pairs; the processes' records and the launch's output."""
    folder = tiny_model_dir("llama")
    work = tmp_path_factory.mktemp("processes")
    write_jsonl(work / "pairs" / "train.jsonl", make_rows(8, seed=5))
    write_jsonl(work / "pairs" / "test.jsonl", make_rows(5, seed=6))  # 5: the processes' last eval batches are evened out
    dpo = {"loss_type": "dpo", "beta": 0.5, "precompute_ref_logps": True}
    _recipe(work, "simpo", folder, do_eval=True)
    _recipe(work, "dpo", folder, **dpo)
    single = [_recipe(work, "simpo-1", folder, do_eval=True, gradient_accumulation_steps=2),
              _recipe(work, "dpo-1", folder, gradient_accumulation_steps=2, **dpo)]
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMPO_HOME", str(work / "simpo-home"))
        patch.setenv("OMP_NUM_THREADS", "1")
        launch = subprocess.run([sys.executable, "-c", RUNNER, "2", str(Path(__file__).with_name("two_processes.py")), str(work)],
                                capture_output=True, text=True, timeout=600)
        assert launch.returncode == 0, launch.stderr[-3000:]
        # One process, the cache now holding the reference log-probs: the same values as the processes'.
        torch.set_num_threads(1)
        try:
            assert [main(["train", str(path)]) for path in single] == [0, 0]
        finally:
            torch.set_num_threads(threads)
    processes = [json.loads((work / f"process-{rank}.json").read_text()) for rank in (0, 1)]
    return work, processes, launch


def _steps(run: Path) -> list[dict]:
    return [entry for entry in json.loads((run / "trainer_state.json").read_text())["log_history"] if "loss" in entry]


@pytest.mark.parametrize("name", ["simpo", "dpo"])
def test_two_processes_train_as_one_with_accumulation_2(runs, name):
    work, processes, _ = runs
    assert [process["statuses"] for process in processes] == [[0, 0], [0, 0]]
    assert [process["world_size"] for process in processes] == [2, 2]
    two, one = work / "runs" / name, work / "runs" / f"{name}-1"
    steps_two, steps_one = _steps(two), _steps(one)
    assert [entry["step"] for entry in steps_two] == [entry["step"] for entry in steps_one] == [1, 2, 3, 4]
    for entry_two, entry_one in zip(steps_two, steps_one):  # the logged loss and metrics: means over both processes
        for key in STEP_KEYS:
            assert entry_two[key] == pytest.approx(entry_one[key], rel=1e-5, abs=1e-5), (entry_two["step"], key)
    weights_two, weights_one = load_file(two / "model.safetensors"), load_file(one / "model.safetensors")
    assert weights_two.keys() == weights_one.keys()
    for key in weights_one:
        torch.testing.assert_close(weights_two[key], weights_one[key], atol=1e-5, rtol=0)
    assert json.loads((two / "run_info.json").read_text())["processes"] == 2
    if name == "simpo":  # evaluation too: every held-out pair counted once, across both processes
        evals_two = [e for e in json.loads((two / "trainer_state.json").read_text())["log_history"] if "eval_loss" in e]
        evals_one = [e for e in json.loads((one / "trainer_state.json").read_text())["log_history"] if "eval_loss" in e]
        assert len(evals_two) == len(evals_one) == 2
        for entry_two, entry_one in zip(evals_two, evals_one):
            for key in ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies", "eval_logps/chosen"):
                assert entry_two[key] == pytest.approx(entry_one[key], rel=1e-5, abs=1e-5), key


def test_only_process_0_writes_and_the_reference_is_computed_once(runs):
    work, (first, second), launch = runs
    assert second["written"] == []  # nothing opened for writing, made, renamed or removed in the runs or the cache
    for name in ("recipe.yaml", "run_info.json", "trainer_state.json", ".simpo-lock"):  # what the audit saw process 0 write
        assert any(event.endswith(f"runs/simpo/{name}") for event in first["written"]), name
    assert any(event.endswith("key.json") and "ref-logps" in event for event in first["written"])
    # DPO's reference log-probs, train and eval split: computed by process 0, read from its cache by process 1.
    assert [r.split(" in ")[0] for r in first["records"] if "reference log-probs" in r] == [
        "train: computed the reference log-probs of 8 pairs", "eval: computed the reference log-probs of 5 pairs"]
    assert [r.split(" from ")[0] for r in second["records"] if "reference log-probs" in r] == [
        "train: reusing the cached reference log-probs of 8 pairs", "eval: reusing the cached reference log-probs of 5 pairs"]
    assert len(list((work / "simpo-home" / "ref-logps").iterdir())) == 2  # one cache folder per split, no leftovers
    # The console: process 0's messages once each; process 1's (it logged them too) not at all.
    dataset_line = "train: 8 pairs; dropped: none"
    assert launch.stderr.count(dataset_line) == sum(dataset_line in r for r in first["records"]) == sum(dataset_line in r for r in second["records"]) > 0
    assert launch.stderr.count("computed the reference log-probs") == 2 and "reusing the cached" not in launch.stderr
    assert launch.stdout.count("held-out pairs: 5") == 1  # the SimPO run's summary, printed once


def test_kto_reference_point_is_the_mean_over_both_processes(runs):
    _, processes, _ = runs
    chosen = torch.tensor([value for process in processes for value in process["kto"]["chosen"]], dtype=torch.float64)
    rejected = torch.tensor([value for process in processes for value in process["kto"]["rejected"]], dtype=torch.float64)
    assert len(chosen) == 3 + 5
    beta, weight_w, weight_l = 0.7, 1.3, 0.8
    z_w, z_l = beta * max(0.0, rejected.mean().item()), beta * max(0.0, chosen.mean().item())  # over the union
    expected = weight_w * (1 - torch.sigmoid(beta * chosen - z_w)) + weight_l * (1 - torch.sigmoid(z_l - beta * rejected))
    got = torch.tensor([value for process in processes for value in process["kto"]["losses"]], dtype=torch.float64)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    # z is not differentiated: d loss_i / d R_w,i = -lambda_w * beta * s * (1 - s), s = sigmoid(beta * R_w,i - z_w)
    s = torch.sigmoid(beta * chosen - z_w)
    grad = torch.tensor([value for process in processes for value in process["kto"]["chosen_grad"]], dtype=torch.float64)
    torch.testing.assert_close(grad, -weight_w * beta * s * (1 - s), atol=1e-12, rtol=0)
    # Process 0's own means would give other losses: the check tells the two apart.
    own_w, own_l = beta * max(0.0, rejected[:3].mean().item()), beta * max(0.0, chosen[:3].mean().item())
    own = weight_w * (1 - torch.sigmoid(beta * chosen[:3] - own_w)) + weight_l * (1 - torch.sigmoid(own_l - beta * rejected[:3]))
    assert (own - got[:3]).abs().min() > 1e-4


def test_group_by_length_order_is_dealt_out_whole_each_epoch(runs):
    _, (first, second), _ = runs
    rows = sorted(first["rows"])
    for epoch in range(2):  # each process 2 batches of 2 pairs; together every pair once
        batches_0, batches_1 = first["group_by_length"][epoch], second["group_by_length"][epoch]
        assert [len(batch) for batch in batches_0 + batches_1] == [2, 2, 2, 2]
        assert sorted(row for batch in batches_0 + batches_1 for row in batch) == rows, f"epoch {epoch}"
    assert first["group_by_length"][0] != first["group_by_length"][1]  # a new order each epoch


def test_the_launcher_returns_the_exit_status_of_the_process_that_failed(tmp_path):
    script = tmp_path / "fails.py"  # process 1 stops as `simpo` does on a training error; torchrun stops process 0
    script.write_text("import os, sys, time\nif os.environ['RANK'] == '1':\n    sys.exit(3)\ntime.sleep(600)\n")
    result = subprocess.run([sys.executable, "-c", RUNNER, "2", str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 3, result.stderr[-2000:]


def test_nproc_refused_inside_a_launched_process(tmp_path, monkeypatch, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": str(tmp_path), "dataset_mixer": {str(tmp_path): 1.0}}))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["train", str(recipe), "--nproc", "2"]) == 2
    assert capsys.readouterr().err == (
        "simpo: error: --nproc 2: this is already process 1 of 2 started by a launcher (accelerate launch, torchrun); "
        "drop --nproc, or run the command without the launcher\n")
    assert list(tmp_path.iterdir()) == [recipe]


def test_nproc_launches_python_m_simpo_under_accelerate(monkeypatch, capsys):
    command = launch_command(3, ["-m", "simpo", "train", "recipe.yaml", "--beta", "2"])
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "3" and command[command.index("--main_process_port") + 1] == "0"
    assert command[-6:] == ["-m", "simpo", "train", "recipe.yaml", "--beta", "2"]
    # `python -m simpo` is the simpo command, as `accelerate launch -m simpo` runs it.
    monkeypatch.setattr(sys, "argv", ["simpo", "--version"])
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_module("simpo", run_name="__main__")
    assert exit_status.value.code == 0 and capsys.readouterr().out.startswith("simpo ")


@pytest.mark.parametrize("name", ["multi_cpu", "multi_gpu"])
def test_shipped_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(REPO / "recipes" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type == DistributedType.MULTI_GPU  # torchrun starts the processes; simpo sets the CPU where no GPU is
    assert (config.num_processes, config.use_cpu, config.mixed_precision) == {"multi_cpu": (2, True, "no"), "multi_gpu": (8, False, "bf16")}[name]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU is chosen where no GPU is")
def test_a_launched_process_without_a_gpu_is_set_to_the_cpu_and_a_replica_prints_errors_only(monkeypatch):
    import datasets
    import transformers

    from simpo.training.launch import prepare_launched_process

    monkeypatch.setenv("ACCELERATE_USE_CPU", "")  # recorded, so that the variable set below is removed afterwards
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    console = logging.StreamHandler()
    logging.getLogger().addHandler(console)
    levels = {handler: handler.level for handler in logging.getLogger().handlers}  # pytest's own among them
    try:
        prepare_launched_process()  # not launched: nothing changes
        assert "ACCELERATE_USE_CPU" not in os.environ and console.level == logging.NOTSET
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "0")
        prepare_launched_process()
        assert os.environ["ACCELERATE_USE_CPU"] == "true" and console.level == logging.NOTSET  # the main process speaks
        monkeypatch.setenv("RANK", "1")
        prepare_launched_process()
        assert console.level == logging.ERROR and not datasets.is_progress_bar_enabled()
    finally:
        for handler, level in levels.items():
            handler.setLevel(level)
        logging.getLogger().removeHandler(console)
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
