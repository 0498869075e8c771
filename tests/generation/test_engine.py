"""Continuous batching: greedy decoding equals transformers' own `generate` one prompt at a time
(refilling finished rows' places, moving rows into finished rows' places, rebuilding the batch,
dropping unused cache columns and, on Gemma-2 and Gemma-3, sliding windows crossed on the way), and
no request is lost or duplicated."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.generation.engine import Engine, Request
from simpo.generation.sampling import Sampler


def _prompts(tokenizer, count: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 40, (count,), generator=generator).tolist()
    return [torch.randint(10, len(tokenizer) - 10, (n,), generator=generator).tolist() for n in lengths]


def _reference(model, prompt: list[int], stop_ids: list[int], max_new_tokens: int) -> list[int]:
    output = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long), do_sample=False,
                            max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=stop_ids[0])
    new = output[0, len(prompt):].tolist()
    end = next((i for i, token in enumerate(new) if token in stop_ids), None)
    return new if end is None else new[: end + 1]


@pytest.mark.parametrize("kind", ["llama", "gemma2", "gemma3"])
def test_greedy_tokens_equal_generate_through_refills_rebuilds_and_column_drops(kind, tiny_model_dir, monkeypatch):
    folder = tiny_model_dir(kind)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompts = _prompts(tokenizer, 9, seed=0)
    prompts[-1] = (prompts[-1] * 50)[:150]  # a long prompt last, wider than the batch's buffers: the batch is rebuilt around it
    # Tokens the prompts' answers hold at different steps as stop tokens, so that rows end at
    # different steps and others take their places.
    unstopped = [_reference(model, prompt, [-1], 40) for prompt in prompts]
    stop_ids = [tokenizer.eos_token_id, *{unstopped[i][2 + 5 * i] for i in range(0, 8, 2)}]
    expected = [_reference(model, prompt, stop_ids, 40) for prompt in prompts]
    assert len({len(tokens) for tokens in expected}) >= 3 and max(map(len, expected)) == 40
    calls = {"place": 0, "splice": 0, "keep_rows": 0, "drop_columns": 0}
    from simpo.generation import kv_cache

    for name in calls:
        original = getattr(kv_cache.GrowingLayer, name)

        def counted(self, *args, name=name, original=original):
            calls[name] += 1
            return original(self, *args)

        monkeypatch.setattr(kv_cache.GrowingLayer, name, counted)
    engine = Engine(model, Sampler(0.0, 1.0), stop_ids, tokenizer.pad_token_id, 40, max_rows=3)
    results = dict(engine.run([Request(prompt, [None]) for prompt in prompts]))
    assert [results[i][0] for i in range(len(prompts))] == expected
    # rows took finished rows' places, the batch was rebuilt, rows moved into finished rows' places, columns were dropped
    assert all(calls.values()), calls
    if kind != "llama":
        assert max(len(p) + len(t) for p, t in zip(prompts, expected)) > model.config.sliding_window


def test_every_request_comes_back_once_with_all_its_rows(tiny_model_dir):
    folder = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompts = _prompts(tokenizer, 12, seed=1)
    requests = [Request(prompt, [100 * i + copy for copy in range(1 + i % 3)]) for i, prompt in enumerate(prompts)]
    stop_ids = [tokenizer.eos_token_id, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]
    finished = list(Engine(model, Sampler(1.0, 0.9), stop_ids, tokenizer.pad_token_id, 12, max_rows=4).run(requests))
    assert sorted(index for index, _ in finished) == list(range(len(requests)))
    for index, rows in finished:
        assert len(rows) == len(requests[index].seeds)
        for tokens in rows:  # a row ends at its first stop token, or at the limit
            stops = [i for i, token in enumerate(tokens) if token in stop_ids]
            assert stops == [len(tokens) - 1] if stops else len(tokens) == 12
