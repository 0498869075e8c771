"""The growing KV cache holds exactly what transformers' DynamicCache holds, through every operation
the decode loop uses, and the model's outputs with it are the same."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.cache_utils import DynamicLayer

from simpo.generation.kv_cache import GrowingLayer, growing_cache


def _states(batch: int, length: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 2, length, 4, generator=generator), torch.randn(batch, 2, length, 4, generator=generator))


def test_growing_layer_equals_dynamic_layer_through_appends_selects_repeats_and_crops():
    growing, dynamic = GrowingLayer(), DynamicLayer()
    steps = [("update", 300), ("repeat", 3), ("update", 1), ("select", torch.tensor([0, 2, 5, 8])), ("update", 200),
             ("crop", -7), ("update", 1)]
    batch = 3
    for seed, (operation, argument) in enumerate(steps):
        for layer in (growing, dynamic):
            if operation == "update":
                keys, values = layer.update(*_states(batch, argument, seed))
            elif operation == "repeat":
                layer.batch_repeat_interleave(argument)
            elif operation == "select":
                layer.batch_select_indices(argument)
            else:
                layer.crop(argument)
        batch = {"repeat": batch * 3, "select": 4}.get(operation, batch)
        assert torch.equal(growing.keys, dynamic.keys) and torch.equal(growing.values, dynamic.values)
        assert growing.get_seq_length() == dynamic.get_seq_length()
    assert growing.key_buffer.shape[-2] == 600  # the first 300 tokens exactly, then doubled once for the 301st


def test_decoding_with_the_growing_cache_gives_the_same_logits(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("gemma2")).eval()  # sliding and full layers
    ids = torch.randint(5, 500, (2, 40), generator=torch.Generator().manual_seed(0))
    logits = []
    for cache in (DynamicCache(config=model.config), growing_cache(model.config)):
        with torch.inference_mode():
            out = model(input_ids=ids, cache=cache, use_cache=True).logits[:, -1]
            steps = [out]
            for _ in range(30):
                token = steps[-1].argmax(-1, keepdim=True)
                steps.append(model(input_ids=token, cache=cache, use_cache=True).logits[:, -1])
        logits.append(torch.stack(steps))
    assert any(isinstance(layer, GrowingLayer) for layer in growing_cache(model.config).layers)
    torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=0)
