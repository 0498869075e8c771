"""Each response says how many tokens it took and whether it hit `max_new_tokens` without a stop
token, under the real engine: a greedy answer run to the limit, then the same answer stopped at one
of its own tokens taken as the stop token."""

import torch
from helpers import greedy
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.data.bundled import make_prompts
from simpo.generation.backends import Response, TransformersBackend
from simpo.generation.prompts import PromptRenderer, prompt_messages


def test_a_response_records_its_tokens_and_whether_it_was_cut(tiny_model_dir, one_thread):
    folder = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    renderer = PromptRenderer(tokenizer)
    prompt = renderer.ids(prompt_messages(make_prompts(1, seed=2)[0]["prompt"], ""))
    backend = TransformersBackend(model, tokenizer, renderer.stop_ids, 1)
    [full], _ = greedy(backend, [prompt], 10)
    assert isinstance(full, Response) and (full.tokens, full.truncated) == (10, True)  # the random model never stops

    ids = [int(token) for token in model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False)[0, len(prompt):]]
    stop = ids[4]  # the fifth token made a stop token: the answer ends at its first occurrence
    [stopped], _ = greedy(TransformersBackend(model, tokenizer, [stop], 1), [prompt], 10)
    assert (stopped.tokens, stopped.truncated) == (ids.index(stop), False)
    assert stopped == tokenizer.decode(ids[: ids.index(stop)], skip_special_tokens=True).strip()
