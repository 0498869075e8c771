"""Linears with weights packed once for oneDNN give the model's own outputs bit for bit, and the
model's linears are as they were after the block."""

import contextlib

import pytest
import torch
from transformers import AutoModelForCausalLM

from simpo.generation.engine import Engine, Request
from simpo.generation.packed_linears import _packable, packed_linears
from simpo.generation.sampling import Sampler


def test_packed_linears_give_the_same_logits_and_are_restored(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"), dtype=torch.bfloat16).eval()
    if not _packable(model):
        pytest.skip("no oneDNN bf16 weight packing on this CPU (torch capability AVX2 or less) or torch")
    ids = torch.randint(5, 500, (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        with packed_linears(model, rows=3):
            assert "forward" in model.model.layers[0].mlp.up_proj.__dict__  # packed
            packed = model(input_ids=ids).logits
            decode = model(input_ids=ids[:, :1]).logits
        assert not any("forward" in module.__dict__ for module in model.modules())
        assert torch.equal(packed, plain) and torch.equal(decode, model(input_ids=ids[:, :1]).logits)


def test_greedy_decoding_with_packed_linears_equals_without(tiny_model_dir, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"), dtype=torch.bfloat16).eval()
    generator = torch.Generator().manual_seed(3)
    requests = [Request(torch.randint(10, 400, (n,), generator=generator).tolist(), [None]) for n in (5, 19, 11, 30)]

    def run():
        return dict(Engine(model, Sampler(0.0, 1.0), [0], 0, 24, max_rows=2).run(requests))

    packed = run()
    monkeypatch.setattr("simpo.generation.engine.packed_linears", lambda model, rows: contextlib.nullcontext())
    assert run() == packed
