"""`simpo train` end to end: the CLI's run, its saved outputs, resuming from the last checkpoint,
and a DPO run that precomputes its reference log-probs for train and eval and reuses them."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from helpers import GEMMA_TEMPLATE, REPO, recipe_values, wait_for, write_jsonl
from safetensors.torch import load_file
from transformers import AutoTokenizer

from simpo.cli import main
from simpo.data.bundled import make_rows
from simpo.training.checkpoints import newest_complete_checkpoint


@pytest.mark.usefixtures("one_thread")  # the killed run has one thread too: the same reductions, bitwise
def test_cli_end_to_end_then_killed_run_resumes_bitwise_equal(tiny_model_dir, tmp_path, caplog):
    folder = tiny_model_dir("gemma2")
    data = tmp_path / "pairs"
    write_jsonl(data / "train.jsonl", make_rows(16, seed=5))
    write_jsonl(data / "test.jsonl", make_rows(4, seed=6))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(folder), "dataset_mixer": {str(data): 1.0}, "max_length": 128,
        "max_prompt_length": 64, "learning_rate": 1e-3, "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4, "max_steps": 6, "save_strategy": "steps", "save_steps": 1,
        "logging_steps": 1, "report_to": "none", "do_eval": True, "evaluation_strategy": "no", "disable_tqdm": True,
    }))
    out = tmp_path / "out"
    assert main(["train", str(recipe), "--output_dir", str(out), "--beta", "3"]) == 0

    state = json.loads((out / "trainer_state.json").read_text())
    train_logs = [e for e in state["log_history"] if "loss" in e]
    eval_logs = [e for e in state["log_history"] if "eval_loss" in e]
    assert [entry["step"] for entry in train_logs] == [1, 2, 3, 4, 5, 6]  # max_steps 6, logging_steps 1
    for entry in train_logs:  # the --beta 3 of the command line is the loss's: rewards = 3 * A(y)
        assert entry["rewards/chosen"] == pytest.approx(3 * entry["logps/chosen"], rel=1e-5)
        assert entry["rewards/rejected"] == pytest.approx(3 * entry["logps/rejected"], rel=1e-5)
        assert entry["rewards/margins"] == pytest.approx(entry["rewards/chosen"] - entry["rewards/rejected"], rel=1e-4, abs=1e-5)
        assert entry["learning_rate"] > 0 and entry["grad_norm"] > 0 and entry["loss"] > 0
    assert len(eval_logs) == 2  # before and after training
    for entry in eval_logs:
        assert entry["eval_rewards/chosen"] == pytest.approx(3 * entry["eval_logps/chosen"], rel=1e-5)
        assert entry["eval_rewards/accuracies"] in {0.0, 0.25, 0.5, 0.75, 1.0}  # a fraction of the 4 held-out pairs
    generation = json.loads((out / "generation_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert generation["eos_token_id"] == [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    assert tokenizer.chat_template == GEMMA_TEMPLATE
    assert yaml.safe_load((out / "recipe.yaml").read_text())["beta"] == 3
    assert "simpo_packed" not in (out / "config.json").read_text()  # the saved model loads anywhere
    final = load_file(out / "model.safetensors")

    # The same command, killed (SIGKILL) at a random moment around a random step's checkpoint
    # (possibly while writing it), then run again: it resumes and ends bitwise where the first run did.
    # 16 rows and batch 4: steps 5 and 6 start the second epoch, so the resumed data order is checked too.
    chance = random.Random()
    step, delay = chance.randint(1, 4), chance.uniform(0, 0.05)
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen([sys.executable, "-m", "simpo.cli", "train", str(recipe), "--output_dir", str(killed), "--beta", "3"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (killed / f"checkpoint-{step}").exists() or process.poll() is not None, f"checkpoint-{step}", poll=0.002)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    where = f"killed {delay:.3f} s after checkpoint-{step} appeared"
    assert not (killed / "model.safetensors").exists(), where  # the kill came before the end
    newest = newest_complete_checkpoint(killed)  # None when killed while writing checkpoint-1
    caplog.clear()
    assert main(["train", str(recipe), "--output_dir", str(killed), "--beta", "3"]) == 0
    assert (f"resuming from {newest}" in caplog.text) == (newest is not None), where
    resumed = load_file(killed / "model.safetensors")
    assert resumed.keys() == final.keys()
    for name, tensor in final.items():
        assert torch.equal(tensor, resumed[name]), f"{name}: {where}"
    resumed_logs = [e for e in json.loads((killed / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert [e["loss"] for e in resumed_logs[-2:]] == [e["loss"] for e in train_logs[-2:]], where


@pytest.mark.usefixtures("one_thread")
def test_cli_dpo_run_precomputes_train_and_eval_then_reuses_the_cache(tiny_model_dir, tmp_path, cache_in_tmp, caplog):
    folder = tiny_model_dir("gemma2")
    data = tmp_path / "pairs"
    write_jsonl(data / "train.jsonl", make_rows(8, seed=5))
    write_jsonl(data / "test.jsonl", make_rows(4, seed=6))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        **recipe_values(folder, data, tmp_path / "out", loss_type="dpo", beta=0.1, max_steps=2, learning_rate=1e-3),
        "ref_model_name_or_path": str(folder), "do_eval": True, "eval_strategy": "no",
    }))
    assert main(["train", str(recipe)]) == 0
    assert "train: computed the reference log-probs of 8 pairs" in caplog.text
    assert "eval: computed the reference log-probs of 4 pairs" in caplog.text
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    before = state["log_history"][0]
    assert before["step"] == 0 and before["eval_rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    assert before["eval_loss"] == pytest.approx(0.6931472, abs=1e-5)
    caplog.clear()
    assert main(["train", str(recipe), "--output_dir", str(tmp_path / "again")]) == 0
    assert "train: reusing the cached reference log-probs of 8 pairs" in caplog.text
    assert "eval: reusing the cached reference log-probs of 4 pairs" in caplog.text
    assert len(os.listdir(cache_in_tmp)) == 2


@pytest.mark.usefixtures("one_thread")
def test_a_full_disk_during_the_final_save_leaves_a_folder_no_command_takes_for_a_model(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import errno

    from transformers import PreTrainedTokenizerBase

    folder = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs" / "train.jsonl", make_rows(4, seed=5)).parent
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_values(folder, data, out, max_steps=1)))
    save = PreTrainedTokenizerBase.save_pretrained

    def disk_full_midway(self, directory, *args, **kwargs):  # the real save, then the disk fills in tokenizer.json
        save(self, directory, *args, **kwargs)
        tokenizer_json = os.path.join(directory, "tokenizer.json")
        with open(tokenizer_json, "r+b") as file:
            file.truncate(os.path.getsize(tokenizer_json) // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left"):
        patch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full_midway)
        main(["train", str(recipe)])
    assert (out / "INCOMPLETE").is_file() and (out / "model.safetensors").is_file()
    capsys.readouterr()
    refusal = (f"simpo: error: {out} is not a whole model: simpo began saving it and never finished (its INCOMPLETE file is "
               "there: a full disk or a kill during the save); run the command that made it again to save it whole, or use another model")
    for command in (["chat", str(out), "--prompt", "hi", "--max-new-tokens", "2"], ["card", str(out)],
                    ["train", str(recipe), "--model_name_or_path", str(out), "--output_dir", str(tmp_path / "again")]):
        assert main(command) == 2
        assert capsys.readouterr().err.splitlines()[-1:] == [refusal], command
    # The same command again saves it whole; it then loads.
    assert main(["train", str(recipe)]) == 0
    assert not (out / "INCOMPLETE").exists()
    assert AutoTokenizer.from_pretrained(out).chat_template
    capsys.readouterr()
    assert main(["chat", str(out), "--prompt", "hi", "--max-new-tokens", "2", "--dtype", "float32"]) == 0
