"""`simpo generate`: reproducible with its seeds, refuses changed settings in a used folder, and
resumes after kill -9 without losing or repeating a prompt."""

import os
import shutil
import signal
import subprocess
import sys

import pytest
from helpers import REPO, wait_for, write_jsonl, write_prompts

from simpo.cli import main
from simpo.config.pipeline import load_pipeline
from simpo.data.bundled import make_prompts
from simpo.errors import RecipeError
from simpo.stages.generate import run_generate
from simpo.stages.shards import read_stage


def _generate_args(model, prompts, out, *extra, max_new_tokens: int = 8):
    return ["--model_name_or_path", str(model), "--generate.prompts", str(prompts), "--generate.output", str(out),
            "--generate.max_new_tokens", str(max_new_tokens), "--generate.seeds", "[13,21,42]", "--generate.shard_size", "2",
            "--generate.batch_size", "4", *extra]


def test_generate_reproduces_with_seeds_and_refuses_changed_settings(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    prompts = write_prompts(tmp_path / "prompts")
    rows = make_prompts(10, seed=3)
    rows[2]["prompt"] = ""
    rows[5]["prompt"] = {"not": "text"}
    write_jsonl(prompts / "train.jsonl", rows)
    assert main(["generate", *_generate_args(folder, prompts, tmp_path / "a")]) == 0
    assert main(["generate", *_generate_args(folder, prompts, tmp_path / "b")]) == 0
    first, second = read_stage(tmp_path / "a"), read_stage(tmp_path / "b")
    assert first == second
    assert [row["row"] for row in first] == [0, 1, 3, 4, 6, 7, 8, 9]  # rows 2 and 5 skipped
    assert [row["prompt"] for row in first] == [rows[i]["prompt"] for i in (0, 1, 3, 4, 6, 7, 8, 9)]
    assert all(len(row["all_generated_responses"]) == 3 and row["seeds"] == [13, 21, 42] for row in first)
    assert [row["answer"] for row in first] == [rows[i]["answer"] for i in (0, 1, 3, 4, 6, 7, 8, 9)]  # answers travel with rows
    assert len({response for row in first for response in row["all_generated_responses"]}) > len(first)
    pipeline = load_pipeline(None, _generate_args(folder, prompts, tmp_path / "a", "--generate.temperature", "0.5"))
    with pytest.raises(RecipeError, match=r"other settings \(.*temperature: 0.8 -> 0.5"):
        run_generate(pipeline.train.model, pipeline.generate)


@pytest.mark.usefixtures("one_thread")
def test_generate_killed_mid_run_resumes_without_loss_or_repeat(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    prompts = write_prompts(tmp_path / "prompts", train=12)
    out = tmp_path / "killed"
    args = _generate_args(folder, prompts, out, max_new_tokens=16)  # 6 shards of 2 prompts
    command = [sys.executable, "-m", "simpo.cli", "generate", *args]
    # One thread in the killed process as in this one (one_thread), so both runs compute alike.
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        # However slow the machine, wait for the event: the third shard, or the process's end.
        third = out / "shard-00002.jsonl"
        wait_for(lambda: third.exists() or process.poll() is not None, "third shard and no exit of `simpo generate`", poll=0.002)
        exited = process.poll()
        assert exited is None, f"generate exited ({exited}) before its third shard: {(tmp_path / 'stderr.txt').read_text()[-2000:]}"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    written = sorted(path.name for path in out.glob("shard-*.jsonl"))
    assert 3 <= len(written) < 6 and not (out / "COMPLETE").exists()
    assert all(len((out / name).read_text().splitlines()) == 2 for name in written)  # each shard whole (its batch spans shards)
    assert main(["generate", *args]) == 0
    assert main(["generate", *_generate_args(folder, prompts, tmp_path / "whole", max_new_tokens=16)]) == 0
    resumed, whole = read_stage(out), read_stage(tmp_path / "whole")
    assert [row["row"] for row in resumed] == list(range(12))
    assert resumed == whole  # nothing lost, nothing twice, the same text as an uninterrupted run
    assert not list(out.glob("*.partial"))


@pytest.mark.usefixtures("one_thread")
def test_generate_nproc_writes_the_shards_of_one_process_bitwise(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # each process computes as this one does (one thread)
    folder = tiny_model_dir("llama")
    prompts = write_prompts(tmp_path / "prompts", train=12)
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["generate", *_generate_args(folder, prompts, one, max_new_tokens=16)]) == 0
    names = sorted(path.name for path in one.glob("shard-*.jsonl"))
    assert len(names) == 6
    # Two shards already written: the processes share only the four pending ones.
    two.mkdir()
    for name in names[:2]:
        (two / name).write_bytes((one / name).read_bytes())
    (two / "manifest.json").write_bytes((one / "manifest.json").read_bytes())
    kept = {name: (two / name).stat().st_mtime_ns for name in names[:2]}
    assert main(["generate", *_generate_args(folder, prompts, two, max_new_tokens=16), "--nproc", "2"]) == 0
    assert sorted(path.name for path in two.glob("shard-*.jsonl")) == names
    assert [(two / name).read_bytes() for name in names] == [(one / name).read_bytes() for name in names]
    assert (two / "COMPLETE").read_bytes() == (one / "COMPLETE").read_bytes()
    assert {name: (two / name).stat().st_mtime_ns for name in names[:2]} == kept


def test_generate_nproc_process_failure_is_one_message_and_keeps_shards(tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("llama"), model)
    (model / "model.safetensors").write_bytes(b"not weights")  # the parent reads config and tokenizer only; each process fails to load
    prompts = write_prompts(tmp_path / "prompts", train=8)
    out = tmp_path / "out"
    assert main(["generate", *_generate_args(model, prompts, out), "--nproc", "2"]) == 2
    error = capsys.readouterr().err
    assert f"simpo: error: model_name_or_path: the weights of {model} cannot be read" in error, error[-2000:]
    assert "Traceback" not in error
    assert not (out / "COMPLETE").exists() and not list(out.glob("shard-*.jsonl"))


def test_generate_refuses_tensor_parallel_without_vllm(tiny_model_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts")
    pipeline = load_pipeline(None, _generate_args(tiny_model_dir("llama"), prompts, tmp_path / "out", "--generate.backend", "transformers",
                                                  "--generate.tensor_parallel_size", "2"))
    with pytest.raises(RecipeError, match=r"tensor_parallel_size 2 .*--nproc N"):
        run_generate(pipeline.train.model, pipeline.generate)
    assert not (tmp_path / "out").exists()
