"""Generation backends: batched transformers generation equals one prompt at a time; asking for
vLLM without it says what to install."""

import importlib.util

import pytest
import torch
from helpers import greedy
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.data.bundled import make_prompts, make_rows
from simpo.errors import RecipeError
from simpo.generation.backends import TransformersBackend, pick_backend
from simpo.generation.prompts import PromptRenderer, prompt_messages


def test_batched_generation_equals_one_prompt_at_a_time(tiny_model_dir):
    folder = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    renderer = PromptRenderer(tokenizer)
    questions = [row["prompt"] for row in make_prompts(3, seed=1) + make_rows(3, seed=1)]
    prompts = [renderer.ids(prompt_messages(question, "")) for question in questions]
    assert len({len(ids) for ids in prompts}) > 1  # different lengths: left padding is exercised
    batched, tokens = greedy(TransformersBackend(model, tokenizer, renderer.stop_ids, 6), prompts, 12)
    single, single_tokens = greedy(TransformersBackend(model, tokenizer, renderer.stop_ids, 1), prompts, 12)
    assert batched == single and tokens == single_tokens and tokens > 0


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_asking_for_vllm_without_it_says_what_to_install():
    assert pick_backend("auto") == "transformers"
    with pytest.raises(RecipeError, match="generate.backend vllm needs the vllm package"):
        pick_backend("vllm")


@pytest.fixture(scope="module")
def smollm2_prompts(smollm2_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    renderer = PromptRenderer(tokenizer)
    prompts = [renderer.ids(prompt_messages(row["prompt"], "")) for row in make_prompts(4, seed=3)]
    return model, tokenizer, renderer, prompts


def test_greedy_decoding_equals_transformers_generate_as_finished_rows_leave(smollm2_prompts):
    model, tokenizer, renderer, prompts = smollm2_prompts
    ours, _ = greedy(TransformersBackend(model, tokenizer, renderer.stop_ids, 4), prompts, 32)
    theirs = []
    for ids in prompts:  # one at a time: no padding, transformers' own loop
        output = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=32,
                                do_sample=False, eos_token_id=renderer.stop_ids, pad_token_id=tokenizer.pad_token_id)
        new = output[0, len(ids):].tolist()
        end = next((i for i, token in enumerate(new) if token in renderer.stop_ids), None)
        theirs.append(tokenizer.decode(new[:end], skip_special_tokens=True).strip())
    assert ours == theirs
    lengths = [len(tokenizer(text)["input_ids"]) for text in theirs]
    assert len(set(lengths)) > 1  # rows finish at different steps, so finished rows left the batch


def test_copies_of_a_prompt_share_its_prefill_and_equal_separate_runs(smollm2_prompts):
    model, tokenizer, renderer, prompts = smollm2_prompts
    backend = TransformersBackend(model, tokenizer, renderer.stop_ids, 4)
    single, single_tokens = greedy(backend, prompts, 16)
    copies, copies_tokens = greedy(backend, prompts, 16, copies=3)
    assert copies == [text for text in single for _ in range(3)] and copies_tokens == 3 * single_tokens


def test_samples_reproduce_by_seed_whatever_shared_their_batch(smollm2_prompts):
    model, tokenizer, renderer, prompts = smollm2_prompts
    shards = [prompts[:3], prompts[3:]]

    def sample(batch_size, seeds=(13, 21, 42), shards=shards):
        backend = TransformersBackend(model, tokenizer, renderer.stop_ids, batch_size)
        return {number: (texts, tokens) for number, texts, tokens in backend.sample_shards(shards, list(seeds), 0.8, 0.95, 8)}

    first = sample(1)  # one prompt (three rows) at a time: rows are refilled one prompt at a time
    assert first == sample(4)  # and all four prompts in one batch
    assert sample(4, shards=shards[::-1]) == {0: first[1], 1: first[0]}  # a shard's text does not depend on its place
    assert [len(row) for texts, _ in first.values() for row in texts] == [3] * len(prompts)
    assert all(len(set(row)) > 1 for texts, _ in first.values() for row in texts)  # three seeds, three draws
    other = sample(4, seeds=(13, 21, 43))
    assert [row[:2] for row in other[0][0]] == [row[:2] for row in first[0][0]] and other[0][0] != first[0][0]
