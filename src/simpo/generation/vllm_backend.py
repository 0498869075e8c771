"""The `vllm` sampling backend: vLLM's engine, with the interface of `backends.TransformersBackend`.

One request per prompt and seed, `SamplingParams(seed=s)`, as the official on-policy scripts
sample. A seeded request draws from its own generator, so its text depends on its prompt, its seed
and the settings, not on which requests shared its batch (up to the float rounding of batched
matrix products, as on any engine).

vLLM's CPU build cannot rewind a CPU generator, which vLLM does when it splits a prompt's prefill
over steps (chunked prefill: the token sampled after a partial prefill is thrown away and the
generator's offset moved back), and such a request fails with "CPU Generator does not use offset".
Without a GPU the backend turns chunked prefill off, so that every prompt is prefilled in one step
and seeded requests run; it also sizes the KV cache (4 GiB, or VLLM_CPU_KVCACHE_SPACE when set)
instead of reserving a share of the machine's memory.

The texts are decoded as the transformers backend decodes them (the tokenizer simpo rendered the
prompts with, the stop token dropped, special tokens skipped, stripped); the model's
generation_config.json sets no sampling default (temperature, top_p are the recipe's, no top-k).
vLLM starts its engine in a spawned process: a script that samples through this backend builds it
under `if __name__ == "__main__":` (the `simpo` command does).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch

from .backends import Response

CPU_KV_CACHE_GIB = 4


def engine_options(on_gpu: bool) -> dict:
    """The `vllm.LLM` options this backend adds for the device: on the CPU, whole-prompt prefill
    (seeded requests need it there) and a KV cache of a fixed size."""
    if on_gpu:
        return {}
    options = {"enable_chunked_prefill": False}
    if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        options["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB * 2**30
    return options


class VLLMBackend:
    def __init__(self, model_path: str, tokenizer, dtype: str | None, trust_remote_code: bool, stop_ids: list[int],
                 tensor_parallel_size: int = 1):
        from vllm import LLM

        self.llm = LLM(model=model_path, dtype=dtype or "auto", trust_remote_code=trust_remote_code, seed=0, generation_config="vllm",
                       tensor_parallel_size=tensor_parallel_size, **engine_options(torch.cuda.is_available()))
        self.tokenizer, self.stop_ids = tokenizer, stop_ids
        self._next_id = 0

    def _params(self, seed: int | None, temperature: float, top_p: float, max_new_tokens: int):
        from vllm import SamplingParams

        greedy = temperature == 0
        return SamplingParams(temperature=temperature, top_p=1.0 if greedy else top_p, max_tokens=max_new_tokens,
                              seed=None if greedy else seed, stop_token_ids=self.stop_ids, detokenize=False)

    def _text(self, new: list[int]) -> Response:
        stopped = bool(new) and new[-1] in self.stop_ids  # else the request ended at max_new_tokens
        tokens = new[:-1] if stopped else new
        return Response(self.tokenizer.decode(tokens, skip_special_tokens=True).strip(), len(tokens), not stopped)

    def _run(self, requests: list[tuple[list[int], object]]) -> Iterator[tuple[int, list[int]]]:
        """(request number, generated token ids) as each request finishes; all go to the engine at once."""
        engine = self.llm.llm_engine
        first = self._next_id
        self._next_id += len(requests)
        for number, (prompt, params) in enumerate(requests):
            engine.add_request(str(first + number), {"prompt_token_ids": prompt}, params)
        while engine.has_unfinished_requests():
            for output in engine.step():
                if output.finished:
                    yield int(output.request_id) - first, list(output.outputs[0].token_ids)

    def sample_shards(self, shards: list[list[list[int]]], seeds: list[int], temperature: float, top_p: float,
                      max_new_tokens: int) -> Iterator[tuple[int, list[list[str]], int]]:
        """(shard number, one response per prompt and seed ([prompt][seed]), tokens generated) as each
        shard of prompts finishes; the requests of all shards (one per prompt and seed, each with its
        seed) go to the engine together, in shard order."""
        params = [self._params(seed, temperature, top_p, max_new_tokens) for seed in seeds]
        requests, owner = [], []
        for number, prompts in enumerate(shards):
            for position, prompt in enumerate(prompts):
                for k, seed_params in enumerate(params):
                    requests.append((prompt, seed_params))
                    owner.append((number, position, k))
        results = [[[None] * len(seeds) for _ in prompts] for prompts in shards]
        left, tokens = [len(prompts) * len(seeds) for prompts in shards], [0] * len(shards)
        for request, new in self._run(requests):
            number, position, k = owner[request]
            results[number][position][k] = self._text(new)
            tokens[number] += len(new)
            left[number] -= 1
            if not left[number]:
                yield number, results[number], tokens[number]
