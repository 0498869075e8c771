"""The paper's baselines in the trainer: reference log-probs (cached and live), the cache key, and
every method training the tiny random Llama to a training reward accuracy of 1.0."""

import json
import logging
import os
import shutil

import pytest
import torch
import yaml
from conftest import train_tiny, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

import simpo.training.reference as reference
from simpo.cli import main
from simpo.config.recipe import build_recipe
from simpo.data.bundled import make_rows
from simpo.data.collate import PairCollator
from simpo.data.dataset import build_pair_datasets
from simpo.data.encode import PairEncoder
from simpo.ops.logprobs import response_logps
from simpo.training.trainer import SimPOTrainer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The tiny models' ops are too small to gain from threads; on a shared 2-core machine a second
    # thread waiting for a busy core makes every op many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMPO_HOME", str(tmp_path / "simpo-home"))
    return tmp_path / "simpo-home" / "ref-logps"


def recipe_values(folder, data, out, **extra):
    values = {
        "model_name_or_path": str(folder), "dataset_mixer": {str(data): 1.0}, "output_dir": str(out),
        "max_length": 128, "max_prompt_length": 64, "learning_rate": 3e-3, "lr_scheduler_type": "constant",
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "num_train_epochs": 1, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "seed": 0, "disable_tqdm": True,
    }
    return {**values, **extra}


def tokenized(folder, rows, tmp_path, max_length=128, max_prompt_length=64, tokenizer=None):
    data = write_jsonl(tmp_path / f"pairs-{len(os.listdir(tmp_path))}.jsonl", rows)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder)
    recipe = build_recipe(recipe_values(folder, data, tmp_path / "out"))
    train, _ = build_pair_datasets(recipe.data, PairEncoder(tokenizer, max_length, max_prompt_length))
    return train


def test_precomputed_reference_logps_equal_a_live_reference_model(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs.jsonl", make_rows(6, seed=4))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    recipe = build_recipe(recipe_values(folder, data, tmp_path / "out", loss_type="dpo"))
    train, _ = build_pair_datasets(recipe.data, PairEncoder(tokenizer, 128, 64))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    precomputed = SimPOTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=train)

    # The live reference: a fresh copy of the initial weights, one pair at a time, padded, full logits.
    live_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    collate = PairCollator(tokenizer.pad_token_id)
    with torch.no_grad():
        live = torch.stack([response_logps(live_model, collate([row]))[0] for row in train])
    assert torch.allclose(torch.tensor(precomputed.train_dataset["ref_chosen_logps"]), live[:, 0], atol=1e-6, rtol=0)
    assert torch.allclose(torch.tensor(precomputed.train_dataset["ref_rejected_logps"]), live[:, 1], atol=1e-6, rtol=0)

    # And the trainer with a live reference model gives the same loss and metrics on a batch.
    live_args = build_recipe(recipe_values(folder, data, tmp_path / "out", loss_type="dpo", precompute_ref_logps=False)).training
    live_trainer = SimPOTrainer(model=AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), args=live_args,
                                processing_class=tokenizer, train_dataset=train)
    assert live_trainer.ref_model is not None and not any(p.requires_grad for p in live_trainer.ref_model.parameters())
    rows = [precomputed.train_dataset[i] for i in range(4)]
    batch = precomputed.data_collator(rows)
    assert batch["ref_logps"].shape == (8,)
    loss_pre, metrics_pre = precomputed.pair_loss(precomputed.model, batch)
    batch.pop("ref_logps")
    loss_live, metrics_live = live_trainer.pair_loss(live_trainer.model, batch)
    assert loss_pre.item() == pytest.approx(loss_live.item(), abs=1e-6)
    assert loss_pre.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)  # policy == reference at the start
    for key in metrics_pre:
        assert torch.allclose(metrics_pre[key], metrics_live[key], atol=1e-6), key


def test_cache_reused_for_the_same_inputs_and_recomputed_when_they_change(tiny_model_dir, tmp_path, cache_in_tmp, caplog, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir("llama"), folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    collate = PairCollator(tokenizer.pad_token_id, padding_free=True)
    rows = make_rows(6, seed=8)
    caplog.set_level(logging.WARNING, logger="simpo")

    def attach(dataset):
        return reference.with_reference_logps(model, dataset, collate, batch_size=4, chunk_size=16)

    first = attach(tokenized(folder, rows, tmp_path))
    assert "computed the reference log-probs of 6 pairs" in caplog.text
    assert len(os.listdir(cache_in_tmp)) == 1

    # The same inputs: read from the cache, the model never runs.
    def no_model(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    caplog.clear()
    with monkeypatch.context() as patch:
        patch.setattr(reference, "compute_reference_logps", no_model)
        again = attach(tokenized(folder, rows, tmp_path))
    assert "reusing the cached reference log-probs of 6 pairs" in caplog.text
    assert again["ref_chosen_logps"] == first["ref_chosen_logps"]
    assert again["ref_rejected_logps"] == first["ref_rejected_logps"]

    # A changed template, a changed row, a changed max_length, changed weights: each a new key.
    retemplated = AutoTokenizer.from_pretrained(folder)
    retemplated.chat_template = retemplated.chat_template.replace("<|im_start|>", "<|im_start|> ")
    edited = [dict(row) for row in rows]
    edited[3] = {**edited[3], "chosen": edited[3]["chosen"][:-1] + [{"role": "assistant", "content": "A different answer."}]}
    variants = [
        tokenized(folder, rows, tmp_path, tokenizer=retemplated),
        tokenized(folder, edited, tmp_path),
        tokenized(folder, rows, tmp_path, max_length=40, max_prompt_length=32),
    ]
    assert any(variants[2]["response_truncated"])  # the shorter limit does cut something
    for count, dataset in enumerate(variants, start=2):
        caplog.clear()
        attach(dataset)
        assert "computed the reference log-probs" in caplog.text
        assert len(os.listdir(cache_in_tmp)) == count
    os.utime(folder / "model.safetensors", ns=(1, 1))
    caplog.clear()
    attach(tokenized(folder, rows, tmp_path))
    assert "computed the reference log-probs" in caplog.text and len(os.listdir(cache_in_tmp)) == 5
    key = json.loads(next(p for p in cache_in_tmp.glob("*/key.json")).read_text())
    assert {"model", "mixed_precision", "token_ids_sha256", "pairs"} <= set(key)


def test_an_interrupted_cache_write_leaves_no_cache(tiny_model_dir, tmp_path, cache_in_tmp, monkeypatch):
    folder = tiny_model_dir("llama")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    collate = PairCollator(AutoTokenizer.from_pretrained(folder).pad_token_id)
    dataset = tokenized(folder, make_rows(3, seed=2), tmp_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr("safetensors.torch.save_file", killed)
        reference.with_reference_logps(model, dataset, collate, batch_size=2)
    assert not any(path.joinpath("logps.safetensors").exists() for path in cache_in_tmp.iterdir())
    done = reference.with_reference_logps(model, dataset, collate, batch_size=2)
    assert len(done["ref_chosen_logps"]) == 3 and len(list(cache_in_tmp.glob("*/logps.safetensors"))) == 1


# Per method: recipe keys that separate the 8 pairs within 25 epochs (the loss's defaults otherwise).
# The NLL terms of CPO, ORPO (by a large lambda), RRHF and SLiC-HF are turned down: on this data
# they lift the rejected responses' shared tokens as much as the chosen ones', and RRHF's ranking
# term, zero once a pair is ordered, otherwise leaves pairs on the boundary.
METHODS = {
    "simpo": {"beta": 2.0, "gamma_beta_ratio": 0.3},
    "hinge": {"beta": 2.0, "gamma_beta_ratio": 0.3},
    "dpo": {"beta": 0.1},
    "dpo-live": {"loss_type": "dpo", "beta": 0.1, "precompute_ref_logps": False},
    "ipo": {"tau": 0.1},
    "cpo": {"beta": 0.1, "nll_weight": 0.01},
    "kto_pair": {"beta": 0.1},
    "orpo": {"orpo_lambda": 10.0},
    "rdpo": {"beta": 0.1, "rdpo_alpha": 0.01},
    "rrhf": {"nll_weight": 0.0, "learning_rate": 3e-2},
    "slic_hf": {"nll_weight": 0.01},
}
TRAINING = {"per_device_train_batch_size": 8, "num_train_epochs": 25, "learning_rate": 1e-2, "lr_scheduler_type": "linear"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_the_tiny_model_to_accuracy_one(method, tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs" / "train.jsonl", make_rows(8, seed=11))
    keys = {"loss_type": method, **TRAINING, **METHODS[method]}
    logged = train_tiny(folder, build_recipe(recipe_values(folder, data.parent, tmp_path / "out", **keys)))
    assert logged[-1]["rewards/accuracies"] == 1.0
    assert logged[-1]["loss"] < logged[0]["loss"]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert key in logged[-1], key


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
