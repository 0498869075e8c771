"""Sampling engines with one interface: `generate(prompt_ids, seed, temperature, top_p, max_new_tokens)`
for one response per prompt, and `sample(prompt_ids, seeds, key, ...)` for one per prompt and seed.

- `transformers`: prompts sorted by length, left-padded batches, KV cache, all samples of a prompt
  in the batch sharing its prefill, finished rows leaving the batch; batch b of a call with seed s
  samples from `torch.manual_seed(s + b)`, so the same call reproduces the same text on the same
  machine;
- `vllm`: one request per prompt with `SamplingParams(seed=s)`, as the official scripts do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json

import torch

from ..errors import RecipeError
from ..models.loading import load_model, resolve_model_path
from ..models.precision import resolve_dtype
from .kv_cache import growing_cache
from .sampling import NucleusSampling


class TransformersBackend:
    def __init__(self, model, tokenizer, stop_ids: list[int], batch_size: int):
        self.model, self.tokenizer, self.stop_ids, self.batch_size = model.eval(), tokenizer, stop_ids, batch_size

    def _batch(self, prompts: list[list[int]], seed: int | None, temperature: float, top_p: float, max_new_tokens: int, copies: int = 1):
        width = max(map(len, prompts))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, ids in enumerate(prompts):  # left padding: every prompt ends where generation starts
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            attention_mask[i, width - len(ids) :] = 1
        sampler = NucleusSampling(temperature, top_p) if temperature > 0 else None
        if seed is not None:
            torch.manual_seed(seed)
        device = self.model.device
        with torch.inference_mode():
            output = self._decode(input_ids.to(device), attention_mask.to(device), sampler, max_new_tokens, pad, copies)
        texts = [self.tokenizer.decode(new[:-1] if new and new[-1] in self.stop_ids else new, skip_special_tokens=True).strip()
                 for new in output]
        return texts, sum(map(len, output))

    def _decode(self, input_ids, attention_mask, sampler, max_new_tokens: int, pad: int, copies: int = 1) -> list[list[int]]:
        """The new tokens of each row, up to and including its stop token, at most `max_new_tokens`;
        with `copies`, that many rows per prompt (prompt-major), which share the prompt's prefill.

        Greedy without a sampler; with one, a token is drawn from softmax(sampler(logits)) by
        `torch.multinomial`, as transformers' sampling does. A finished row is fed padding until
        an eighth of the batch is finished, and then those rows leave the batch with their cache
        rows, so the batch does not carry finished rows to the length of its longest answer.
        """
        model, rows = self.model, input_ids.shape[0] * copies
        stops = torch.tensor(self.stop_ids, device=input_ids.device)
        new: list[list[int]] = [[] for _ in range(rows)]
        active = torch.arange(rows, device=input_ids.device)  # the batch's rows, as input rows
        finished = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        cache = growing_cache(model.config)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                       cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()
        positions = positions[:, -1:]
        if copies > 1:
            cache.batch_repeat_interleave(copies)
            logits, attention_mask, positions = (t.repeat_interleave(copies, dim=0) for t in (logits, attention_mask, positions))
        for step in range(max_new_tokens):
            if sampler is None:
                tokens = logits.argmax(-1)
            else:
                tokens = torch.multinomial(sampler(None, logits).softmax(-1), num_samples=1).squeeze(1)
            tokens = tokens.masked_fill(finished, pad)
            for row, token, done in zip(active.tolist(), tokens.tolist(), finished.tolist()):
                if not done:
                    new[row].append(token)
            finished |= torch.isin(tokens, stops)
            if step + 1 == max_new_tokens or bool(finished.all()):
                break
            if int(finished.sum()) * 8 >= finished.numel():
                keep = (~finished).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                active, tokens, attention_mask, positions = active[keep], tokens[keep], attention_mask[keep], positions[keep]
                finished = finished[keep]
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=1)
            positions = positions + 1
            logits = model(input_ids=tokens.unsqueeze(1), attention_mask=attention_mask, position_ids=positions,
                           cache=cache, use_cache=True).logits[:, -1].float()
        return new

    def generate(self, prompts: list[list[int]], seed: int | None, temperature: float, top_p: float, max_new_tokens: int,
                 copies: int = 1) -> tuple[list[str], int]:
        """`copies` responses per prompt (prompt-major: prompt i's are texts[i * copies : (i + 1) * copies])
        and the number of tokens generated. Batch b samples from `torch.manual_seed(seed + b)`."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
        texts: list[str] = [""] * (len(prompts) * copies)
        tokens = 0
        for b, start in enumerate(range(0, len(order), self.batch_size)):
            chunk = order[start : start + self.batch_size]
            batch_seed = None if seed is None else seed + b
            batch_texts, batch_tokens = self._batch([prompts[i] for i in chunk], batch_seed, temperature, top_p, max_new_tokens, copies)
            for j, i in enumerate(chunk):
                texts[i * copies : (i + 1) * copies] = batch_texts[j * copies : (j + 1) * copies]
            tokens += batch_tokens
        return texts, tokens

    def sample(self, prompts: list[list[int]], seeds: list[int], key: int, temperature: float, top_p: float, max_new_tokens: int):
        """One response per prompt and seed ([prompt][seed]) and the tokens generated: all seeds of a
        batch of prompts in one batch, each prompt prefilled once. The batches sample from one seed
        derived from `seeds` and `key` (the shard), so the same settings give the same text."""
        seed = int(hashlib.sha256(json.dumps([seeds, key]).encode()).hexdigest()[:12], 16)
        texts, tokens = self.generate(prompts, seed, temperature, top_p, max_new_tokens, copies=len(seeds))
        return [texts[i * len(seeds) : (i + 1) * len(seeds)] for i in range(len(prompts))], tokens


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

    def sample(self, prompts: list[list[int]], seeds: list[int], key: int, temperature: float, top_p: float, max_new_tokens: int):
        """One response per prompt and seed ([prompt][seed]): each request seeded with its seed, as the
        official scripts do (`key` is not needed: a request's seed alone fixes its sample)."""
        per_seed, tokens = [], 0
        for seed in seeds:
            texts, count = self.generate(prompts, seed, temperature, top_p, max_new_tokens)
            per_seed.append(texts)
            tokens += count
        return [list(row) for row in zip(*per_seed)], tokens


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
    """The sampling engine for the policy of `model_config`, its weights in `dtype` (a resolved
    name, see `sampling_dtype`) when given, else the recipe's torch_dtype under transformers and
    the checkpoint's under vLLM."""
    if pick_backend(name) == "vllm":
        return VLLMBackend(resolve_model_path(model_config.model_name_or_path), dtype, model_config.trust_remote_code, stop_ids)
    model = load_model(model_config, dtype)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return TransformersBackend(model, tokenizer, stop_ids, batch_size)
