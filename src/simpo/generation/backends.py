"""Sampling engines with one interface: `sample_shards(shards, seeds, temperature, top_p, max_new_tokens)`,
one response per prompt and seed, each shard given back when its last response is in.

- `transformers`: continuous batching (`generation.engine`): all samples of a prompt share its
  prefill, finished rows leave the batch and waiting prompts take their places, across shards;
  every sample draws from its own random stream, seeded from its seed and its prompt's tokens, so
  the same settings give the same text on the same machine, and in fp32 whichever prompts shared
  its batch (bf16 kernels round differently with the batch, so there a sample can take another path);
- `vllm` (`generation.vllm_backend`): one request per prompt and seed with `SamplingParams(seed=s)`,
  as the official scripts do; on vLLM's CPU build too (chunked prefill off there).

Each response is a `Response`: its text (a `str`), with the number of tokens generated (the stop
token aside) and whether it hit `max_new_tokens` without a stop token (`truncated`).

A LoRA adapter folder is loaded by `transformers` with the adapter merged in (`models.loading`);
vLLM takes full model folders only, so `backend: vllm` refuses an adapter folder (`simpo merge`
writes the full model) and `auto` picks `transformers` for one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Iterator

import torch

from ..errors import RecipeError
from ..models.loading import adapter_base, load_model, resolve_model_path
from ..models.precision import resolve_dtype
from .engine import Engine, Request
from .sampling import Sampler

logger = logging.getLogger("simpo")


class Response(str):
    """A response's text, with its token count (the stop token aside) and whether it ended at
    `max_new_tokens` without a stop token."""

    tokens: int
    truncated: bool

    def __new__(cls, text: str, tokens: int, truncated: bool) -> Response:
        response = super().__new__(cls, text)
        response.tokens, response.truncated = tokens, truncated
        return response


def stream_seed(seed: int, prompt: list[int]) -> int:
    """The random stream of one sample: from its seed and its prompt's tokens."""
    return int(hashlib.sha256(json.dumps([seed, 0, prompt]).encode()).hexdigest()[:15], 16)


class TransformersBackend:
    def __init__(self, model, tokenizer, stop_ids: list[int], batch_size: int):
        self.model, self.tokenizer, self.stop_ids, self.batch_size = model.eval(), tokenizer, stop_ids, batch_size

    def _engine(self, temperature: float, top_p: float, max_new_tokens: int, copies: int) -> Engine:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        return Engine(self.model, Sampler(temperature, top_p), self.stop_ids, pad, max_new_tokens, self.batch_size * copies)

    def _text(self, new: list[int]) -> Response:
        stopped = bool(new) and new[-1] in self.stop_ids  # else the row ended at max_new_tokens
        tokens = new[:-1] if stopped else new
        return Response(self.tokenizer.decode(tokens, skip_special_tokens=True).strip(), len(tokens), not stopped)

    def sample_shards(self, shards: list[list[list[int]]], seeds: list[int], temperature: float, top_p: float,
                      max_new_tokens: int) -> Iterator[tuple[int, list[list[str]], int]]:
        """(shard number, one response per prompt and seed ([prompt][seed]), tokens generated) as each
        shard of prompts finishes; the prompts of all shards flow through one batch."""
        requests, owner = [], []
        for number, prompts in enumerate(shards):
            for position, prompt in enumerate(prompts):
                requests.append(Request(prompt, [stream_seed(seed, prompt) for seed in seeds]))
                owner.append((number, position))
        results = [[None] * len(prompts) for prompts in shards]
        left, tokens = [len(prompts) for prompts in shards], [0] * len(shards)
        for k, rows in self._engine(temperature, top_p, max_new_tokens, len(seeds)).run(requests):
            number, position = owner[k]
            results[number][position] = [self._text(row) for row in rows]
            tokens[number] += sum(map(len, rows))
            left[number] -= 1
            if not left[number]:
                yield number, results[number], tokens[number]


def pick_backend(name: str, model: str | None = None) -> str:
    """The backend `name` (auto: vllm on a GPU where it is installed) stands for, for the model `model`."""
    has_vllm = importlib.util.find_spec("vllm") is not None
    if name == "vllm" and not has_vllm:
        raise RecipeError("generate.backend vllm needs the vllm package: `make vllm` makes .venv-vllm with its CPU build, "
                          "docs/pipeline.md#vllm says how on a GPU; or use transformers")
    if model is not None and adapter_base(model):
        if name == "vllm":
            raise RecipeError(f"the vllm backend takes full model folders, and {model} holds a LoRA adapter: "
                              f"run `simpo merge {model}` and use its merged/ folder, or the transformers backend")
        if name == "auto" and torch.cuda.is_available() and has_vllm:
            logger.warning("%s holds a LoRA adapter, which vllm does not load here: generating with transformers", model)
        return "transformers"
    if name != "auto":
        return name
    return "vllm" if torch.cuda.is_available() and has_vllm else "transformers"


def sampling_dtype(setting: str | None, key: str) -> str | None:
    """The dtype a sampling setting stands for on this machine (`auto` resolved); None: unset."""
    return resolve_dtype(setting, key) if setting else None


def open_backend(name: str, model_config, tokenizer, stop_ids: list[int], batch_size: int, dtype: str | None = None,
                 tensor_parallel_size: int = 1):
    """The sampling engine for the policy of `model_config`, its weights in `dtype` (a resolved
    name, see `sampling_dtype`) when given, else the recipe's torch_dtype under transformers and
    the checkpoint's under vLLM; vLLM's engine over `tensor_parallel_size` GPUs."""
    if pick_backend(name, model_config.model_name_or_path) == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(resolve_model_path(model_config.model_name_or_path), tokenizer, dtype, model_config.trust_remote_code, stop_ids,
                           tensor_parallel_size)
    model = load_model(model_config, dtype)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return TransformersBackend(model, tokenizer, stop_ids, batch_size)
