"""Reference log-probs (reference losses: dpo, ipo, kto_pair, rdpo): precomputed equal a live
reference model, the cache is reused for the same inputs and keyed on everything that changes them,
an interrupted cache write leaves no cache, and a damaged one is computed again, never used."""

import json
import logging
import os
import shutil

import pytest
import torch
from helpers import recipe_values, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

import simpo.training.reference as reference
from simpo.config.recipe import build_recipe
from simpo.data.bundled import make_rows
from simpo.data.collate import PairCollator
from simpo.data.dataset import build_pair_datasets
from simpo.data.encode import PairEncoder
from simpo.ops.logprobs import response_logps
from simpo.training.trainer import SimPOTrainer

pytestmark = pytest.mark.usefixtures("one_thread", "cache_in_tmp")


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


def test_a_damaged_cache_is_never_used_but_computed_again_and_replaced(tiny_model_dir, tmp_path, cache_in_tmp, caplog):
    from safetensors.torch import save_file

    folder = tiny_model_dir("llama")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    collate = PairCollator(AutoTokenizer.from_pretrained(folder).pad_token_id)
    dataset = tokenized(folder, make_rows(4, seed=2), tmp_path)
    first = reference.with_reference_logps(model, dataset, collate, batch_size=2)
    (cache,) = cache_in_tmp.iterdir()
    values, key = cache / "logps.safetensors", cache / "key.json"
    whole = values.read_bytes()
    assert json.loads(key.read_text())["file"]["bytes"] == len(whole)
    caplog.set_level(logging.WARNING, logger="simpo")

    edited = tmp_path / "edited.safetensors"  # loadable, the right shapes, other values: only the hash tells
    save_file({"chosen": torch.zeros(4), "rejected": torch.zeros(4)}, str(edited))
    for damage in (whole[: len(whole) // 2], edited.read_bytes()):
        values.write_bytes(damage)
        caplog.clear()
        again = reference.with_reference_logps(model, dataset, collate, batch_size=2)
        assert f"the cached reference log-probs in {cache} are damaged" in caplog.text
        assert "computed the reference log-probs of 4 pairs" in caplog.text
        assert again["ref_chosen_logps"] == first["ref_chosen_logps"]
        assert values.read_bytes() == whole  # replaced by the values computed again
    assert [path.name for path in cache_in_tmp.iterdir()] == [cache.name]

    # A cache written before key.json recorded the file's size still reads; cut short, it is refused.
    record = json.loads(key.read_text())
    key.write_text(json.dumps({name: value for name, value in record.items() if name != "file"}))
    caplog.clear()
    assert reference.with_reference_logps(model, dataset, collate, batch_size=2)["ref_chosen_logps"] == first["ref_chosen_logps"]
    assert "reusing the cached reference log-probs of 4 pairs" in caplog.text
    values.write_bytes(whole[: len(whole) // 2])
    caplog.clear()
    assert reference.with_reference_logps(model, dataset, collate, batch_size=2)["ref_chosen_logps"] == first["ref_chosen_logps"]
    assert "are damaged" in caplog.text and values.read_bytes() == whole
