"""`simpo train` end to end: the CLI's run, its saved outputs, resuming from the last checkpoint,
and a DPO run that precomputes its reference log-probs for train and eval and reuses them."""

import json
import os
import shutil

import pytest
import torch
import yaml
from helpers import GEMMA_TEMPLATE, recipe_values, write_jsonl
from safetensors.torch import load_file
from transformers import AutoTokenizer

from simpo.cli import main
from simpo.data.bundled import make_rows


def test_cli_end_to_end_then_resume_gives_the_same_weights(tiny_model_dir, tmp_path, caplog):
    folder = tiny_model_dir("gemma2")
    data = tmp_path / "pairs"
    write_jsonl(data / "train.jsonl", make_rows(16, seed=5))
    write_jsonl(data / "test.jsonl", make_rows(4, seed=6))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(folder), "dataset_mixer": {str(data): 1.0}, "max_length": 128,
        "max_prompt_length": 64, "learning_rate": 1e-3, "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4, "max_steps": 4, "save_strategy": "steps", "save_steps": 2,
        "logging_steps": 1, "report_to": "none", "do_eval": True, "evaluation_strategy": "no", "disable_tqdm": True,
    }))
    out = tmp_path / "out"
    assert main(["train", str(recipe), "--output_dir", str(out), "--beta", "3"]) == 0

    state = json.loads((out / "trainer_state.json").read_text())
    train_logs = [e for e in state["log_history"] if "loss" in e]
    eval_logs = [e for e in state["log_history"] if "eval_loss" in e]
    assert [entry["step"] for entry in train_logs] == [1, 2, 3, 4]  # max_steps 4, logging_steps 1
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

    # Lose the end of the run: the same command resumes from checkpoint-2 and ends where it did.
    for name in ("model.safetensors", "trainer_state.json"):
        (out / name).unlink()
    shutil.rmtree(out / "checkpoint-4")
    caplog.clear()
    assert main(["train", str(recipe), "--output_dir", str(out), "--beta", "3"]) == 0
    assert f"resuming from {out / 'checkpoint-2'}" in caplog.text
    resumed = load_file(out / "model.safetensors")
    for name, tensor in final.items():
        assert torch.allclose(tensor, resumed[name], atol=1e-6), name
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4


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
