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
    # 300 tokens: 300 + 300 // 8 = 337 columns, which hold the 301st; the 501st grows it to 501 + 62
    assert growing.key_buffer.shape[-2] == 563


def test_place_and_splice_lay_rows_against_the_right_edge():
    layer, incoming = GrowingLayer(), GrowingLayer()
    old, new = _states(3, 10, 0), _states(2, 6, 1)
    layer.update(*old)
    assert layer.key_buffer.shape[-2] == 26 and not layer.key_buffer[:, :, 10:].any()  # 16 columns of zeros to spare
    incoming.update(*new)
    layer.place(torch.tensor([2, 0]), *new)  # rows 2 and 0 now hold the new rows in their last 6 columns
    assert torch.equal(layer.keys[[2, 0], :, 4:], new[0]) and torch.equal(layer.keys[1], old[0][1])
    assert torch.equal(layer.values[[2, 0], :, :4], old[1][[2, 0], :, :4])  # stale columns, hidden by the mask
    layer.splice(torch.tensor([1]), 3, incoming, 8)  # row 1 without 3 columns (7 left), then the 2 incoming rows (6)
    assert layer.keys.shape == (3, 2, 8, 4) and layer.get_seq_length() == 8
    assert torch.equal(layer.keys[0, :, 1:], old[0][1, :, 3:]) and not layer.keys[0, :, :1].any()
    assert torch.equal(layer.values[1:, :, 2:], new[1]) and not layer.values[1:, :, :2].any()


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


def test_rows_move_and_columns_drop_within_the_buffer_until_its_spare_is_filled():
    layer = GrowingLayer(spare=5)
    keys, values = _states(4, 10, 0)
    layer.update(keys, values)
    buffer = layer.key_buffer
    assert buffer.shape[-2] == 15  # 10 filled + the 5 to spare
    layer.drop_columns(3)
    assert layer.get_seq_length() == 7 and torch.equal(layer.keys, keys[:, :, 3:])
    layer.keep_rows(2, torch.tensor([3]), torch.tensor([0]))  # the first 2 rows kept, row 3 moved into row 0's place
    assert torch.equal(layer.keys, keys[[3, 1], :, 3:]) and torch.equal(layer.values, values[[3, 1], :, 3:])
    new = _states(2, 2, 1)
    layer.update(*new)
    assert layer.key_buffer.data_ptr() == buffer.data_ptr()  # nothing reallocated so far
    assert torch.equal(layer.keys[:, :, -2:], new[0]) and torch.equal(layer.keys.whole[:, :, :9], layer.keys)
    layer.drop_columns(-3)  # the dropped columns come back (their entries stale, for the mask to hide)
    assert layer.get_seq_length() == 12 and torch.equal(layer.values[:, :, 3:10], values[[3, 1], :, 3:])
    layer.drop_columns(2)
    more = _states(2, 4, 2)
    layer.update(*more)  # past the spare: a new buffer with the 10 filled columns and the 4 new, an eighth more (at least 16)
    assert layer.first == 0 and layer.get_seq_length() == 14 and layer.key_buffer.shape[-2] == 14 + 16
    assert torch.equal(layer.keys[:, :, 1:8], keys[[3, 1], :, 3:]) and torch.equal(layer.keys[:, :, -4:], more[0])
