"""Generation backends: batched transformers generation equals one prompt at a time; asking for
vLLM without it says what to install."""

import importlib.util

import pytest
import torch
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
    batched, tokens = TransformersBackend(model, tokenizer, renderer.stop_ids, 6).generate(prompts, None, 0.0, 1.0, 12)
    single, single_tokens = TransformersBackend(model, tokenizer, renderer.stop_ids, 1).generate(prompts, None, 0.0, 1.0, 12)
    assert batched == single and tokens == single_tokens and tokens > 0


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_asking_for_vllm_without_it_says_what_to_install():
    assert pick_backend("auto") == "transformers"
    with pytest.raises(RecipeError, match="generate.backend vllm needs the vllm package"):
        pick_backend("vllm")
