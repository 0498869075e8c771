"""Sampling engines with one interface: `generate(prompt_ids, seed, temperature, top_p, max_new_tokens)`.

- `transformers`: prompts sorted by length, left-padded batches, KV cache; batch b of a call with
  seed s samples from `torch.manual_seed(s + b)`, so the same call reproduces the same text on the
  same machine;
- `vllm`: one request per prompt with `SamplingParams(seed=s)`, as the official scripts do.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import torch
from transformers import LogitsProcessorList

from ..errors import RecipeError
from ..models.loading import load_model, resolve_model_path
from ..models.precision import resolve_dtype
from .sampling import NucleusSampling


class TransformersBackend:
    def __init__(self, model, tokenizer, stop_ids: list[int], batch_size: int):
        self.model, self.tokenizer, self.stop_ids, self.batch_size = model.eval(), tokenizer, stop_ids, batch_size

    def _batch(self, prompts: list[list[int]], seed: int | None, temperature: float, top_p: float, max_new_tokens: int):
        width = max(map(len, prompts))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, ids in enumerate(prompts):  # left padding: every prompt ends where generation starts
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            attention_mask[i, width - len(ids) :] = 1
        sampling = {"do_sample": False}
        if temperature > 0:  # our processor applies temperature and top-p; transformers' own stay off
            sampling = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                        "logits_processor": LogitsProcessorList([NucleusSampling(temperature, top_p)])}
        if seed is not None:
            torch.manual_seed(seed)
        device = self.model.device
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), max_new_tokens=max_new_tokens,
                eos_token_id=self.stop_ids, pad_token_id=pad, **sampling,
            )
        texts, tokens = [], 0
        for new in output[:, width:].tolist():
            end = next((i for i, token in enumerate(new) if token in self.stop_ids), None)
            tokens += len(new) if end is None else end + 1
            texts.append(self.tokenizer.decode(new[:end], skip_special_tokens=True).strip())
        return texts, tokens

    def generate(self, prompts: list[list[int]], seed: int | None, temperature: float, top_p: float, max_new_tokens: int):
        """One response per prompt (in the given order) and the number of tokens generated."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
        texts: list[str] = [""] * len(prompts)
        tokens = 0
        for b, start in enumerate(range(0, len(order), self.batch_size)):
            chunk = order[start : start + self.batch_size]
            batch_seed = None if seed is None else seed + b
            batch_texts, batch_tokens = self._batch([prompts[i] for i in chunk], batch_seed, temperature, top_p, max_new_tokens)
            for i, text in zip(chunk, batch_texts):
                texts[i] = text
            tokens += batch_tokens
        return texts, tokens


class VLLMBackend:
    def __init__(self, model_path: str, dtype: str | None, trust_remote_code: bool, stop_ids: list[int]):
        from vllm import LLM

        self.llm = LLM(model=model_path, dtype=dtype or "auto", trust_remote_code=trust_remote_code)
        self.stop_ids = stop_ids

    def generate(self, prompts: list[list[int]], seed: int | None, temperature: float, top_p: float, max_new_tokens: int):
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=temperature, top_p=top_p if temperature > 0 else 1.0, max_tokens=max_new_tokens,
            seed=seed, stop_token_ids=self.stop_ids, skip_special_tokens=True,
        )
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=False)
        return [out.outputs[0].text.strip() for out in outputs], sum(len(out.outputs[0].token_ids) for out in outputs)


def pick_backend(name: str) -> str:
    has_vllm = importlib.util.find_spec("vllm") is not None
    if name == "vllm" and not has_vllm:
        raise RecipeError("generate.backend vllm needs the vllm package (pip install vllm, on a GPU machine); or use transformers")
    if name != "auto":
        return name
    return "vllm" if torch.cuda.is_available() and has_vllm else "transformers"


def sampling_dtype(setting: str | None, key: str) -> str | None:
    """The dtype a sampling setting stands for on this machine (`auto` resolved); None: unset."""
    return resolve_dtype(setting, key) if setting else None


def open_backend(name: str, model_config, tokenizer, stop_ids: list[int], batch_size: int, dtype: str | None = None):
    """The sampling engine for the policy of `model_config`, its weights in `dtype` when given
    (else the recipe's torch_dtype under transformers, the checkpoint's under vLLM)."""
    if dtype:
        model_config = dataclasses.replace(model_config, torch_dtype=dtype)
    if pick_backend(name) == "vllm":
        return VLLMBackend(resolve_model_path(model_config.model_name_or_path), model_config.torch_dtype, model_config.trust_remote_code, stop_ids)
    model = load_model(model_config)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return TransformersBackend(model, tokenizer, stop_ids, batch_size)
