"""On-policy sampling: N responses per prompt from the policy, resumable, with a recorded seed each.

Prompts are rendered with the model's chat template (`add_generation_prompt=True`; a system
message is folded into the first user turn when the template has no system role) and generation
stops at the template's end-of-turn token(s). Two backends give the same output format:
- `transformers`: prompts grouped by length inside a shard, left-padded batches, KV cache. Batch b
  of shard k under seed s samples from `torch.manual_seed(s * 1_000_003 + k * 1_009 + b)`, so a
  rerun with the same settings reproduces the same text on the same machine;
- `vllm`: one request per prompt with `SamplingParams(seed=s)`, as the official scripts do.
Sampling follows the official settings (temperature, top_p; no top-k).

Output rows: `prompt_id`, `prompt` (as given), `all_generated_responses` (one per seed),
`seeds`, `row` (the input row number), and the input row's other fields (e.g. `answer`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList

from .config import RecipeError
from .data.chat import fold_system, render, stop_token_ids, template_shows_system
from .data.rows import DataError, as_messages
from .data.sources import load_split
from .shards import ShardedOutput, fingerprint
from .stages import GenerateConfig

logger = logging.getLogger("simpo")

# Fields of an input row that the later stages write themselves, so they are not passed through.
RESERVED = {"prompt", "prompt_id", "chosen", "rejected", "messages", "all_generated_responses", "all_rm_scores", "seeds", "row"}


@dataclass
class PromptRow:
    row: int  # number of the row in its source, counted from 0
    prompt_id: str
    prompt: str | list[dict]
    messages: list[dict]
    extra: dict


def prompt_messages(prompt, where: str) -> list[dict]:
    """A prompt (a string, or a list of {role, content} ending with a user turn) as messages; a
    prompt generation cannot use raises `DataError` naming `where`."""
    messages = as_messages(prompt, "prompt", where)
    if messages[-1]["role"] != "user":
        raise DataError(f"{where}: the prompt ends with a {messages[-1]['role']!r} turn; a prompt ends with the user's turn")
    if not any(turn["content"].strip() for turn in messages):
        raise DataError(f"{where}: empty prompt")
    return messages


def read_prompts(source: str, split: str, max_prompts: int | None = None) -> tuple[list[PromptRow], Counter]:
    """Usable prompt rows of a source, and the reasons for the ones skipped (each logged by row)."""
    loaded = load_split(source, split)
    if loaded is None:
        raise RecipeError(f"prompts source {source} has no split {split!r}")
    label, rows = loaded
    if "prompt" not in rows.column_names:
        raise RecipeError(f"{label}: rows need a 'prompt' column (text or a list of messages); its columns: {rows.column_names}")
    if max_prompts is not None:
        rows = rows.select(range(min(max_prompts, len(rows))))
    kept, skipped = [], Counter()
    for number, row in enumerate(rows):
        try:
            messages = prompt_messages(row.get("prompt"), f"{label}, row {number}")
        except DataError as err:
            logger.warning("skipped: %s", err)
            skipped["empty prompt" if str(err).endswith(": empty prompt") else "not a prompt"] += 1
            continue
        prompt_id = row.get("prompt_id") or hashlib.sha256(json.dumps(row["prompt"]).encode()).hexdigest()[:16]
        extra = {key: value for key, value in row.items() if key not in RESERVED}
        kept.append(PromptRow(number, str(prompt_id), row["prompt"], messages, extra))
    return kept, skipped


class PromptRenderer:
    """Token ids of prompts under the model's chat template, and the model's stop tokens."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.fold_system = not template_shows_system(tokenizer)
        self.stop_ids = stop_token_ids(tokenizer)

    def ids(self, messages: list[dict]) -> list[int]:
        if self.fold_system:
            messages = fold_system(messages)
        text = render(self.tokenizer, messages, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


class NucleusSampling:
    """Temperature, then top-p (keep the most probable tokens until their mass reaches `top_p`),
    as transformers' and vLLM's samplers define it, without sorting the whole vocabulary: the
    `candidates` most probable tokens of a row hold its nucleus unless their mass is below `top_p`,
    and only such rows are sorted in full. Sorting 49,152 logits per row and step is what made
    sampling twice as slow as greedy decoding on the CPU."""

    def __init__(self, temperature: float, top_p: float, candidates: int = 256):
        self.temperature, self.top_p, self.candidates = temperature, top_p, candidates

    def _keep(self, probs: torch.Tensor, k: int) -> torch.Tensor:
        top, ids = probs.topk(k, dim=-1)  # descending
        before = top.cumsum(-1) - top  # the mass of the more probable tokens
        return torch.zeros_like(probs, dtype=torch.bool).scatter(-1, ids, before < self.top_p), top.sum(-1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature
        if self.top_p >= 1:
            return scores
        probs = scores.float().softmax(-1)
        keep, mass = self._keep(probs, min(self.candidates, probs.shape[-1]))
        short = mass < self.top_p
        if short.any():
            keep[short] = self._keep(probs[short], probs.shape[-1])[0]
        return scores.masked_fill(~keep, float("-inf"))


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
    import importlib.util

    has_vllm = importlib.util.find_spec("vllm") is not None
    if name == "vllm" and not has_vllm:
        raise RecipeError("generate.backend vllm needs the vllm package (pip install vllm, on a GPU machine); or use transformers")
    if name != "auto":
        return name
    return "vllm" if torch.cuda.is_available() and has_vllm else "transformers"


def open_backend(name: str, model_config, tokenizer, stop_ids: list[int], batch_size: int, dtype: str | None = None):
    """The sampling engine for the policy of `model_config`, its weights in `dtype` when given."""
    from .models import load_model, resolve_model_path

    if dtype:
        model_config = dataclasses.replace(model_config, torch_dtype=dtype)
    if pick_backend(name) == "vllm":
        return VLLMBackend(resolve_model_path(model_config.model_name_or_path), model_config.torch_dtype, model_config.trust_remote_code, stop_ids)
    model = load_model(model_config)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return TransformersBackend(model, tokenizer, stop_ids, batch_size)


def check_lengths(rows: list[PromptRow], renderer: PromptRenderer, limit: int, label: str) -> tuple[list[PromptRow], list[list[int]], Counter]:
    """Drop (and log by row) prompts whose tokens leave no room for `max_new_tokens`."""
    kept, ids, skipped = [], [], Counter()
    for row in rows:
        prompt_ids = renderer.ids(row.messages)
        if len(prompt_ids) > limit:
            logger.warning("%s, row %d: skipped: too long for the model (%d prompt tokens, at most %d)", label, row.row, len(prompt_ids), limit)
            skipped["too long for the model"] += 1
            continue
        kept.append(row)
        ids.append(prompt_ids)
    return kept, ids, skipped


def run_generate(model_config, config: GenerateConfig, check=None) -> str:
    """Generate into `config.output`, continuing from its finished shards; returns the folder.

    `check(rows)`, when given, inspects the prompt rows before any generation (the pipeline checks
    that programmatic rewards find their reference answers)."""
    from tqdm.auto import tqdm
    from transformers import AutoConfig

    from .models import load_tokenizer, resolve_model_path

    config.validate()
    backend_name = pick_backend(config.backend)
    tokenizer = load_tokenizer(model_config)
    renderer = PromptRenderer(tokenizer)
    model_path = resolve_model_path(model_config.model_name_or_path)
    context = getattr(AutoConfig.from_pretrained(model_path, trust_remote_code=model_config.trust_remote_code), "max_position_embeddings", None)
    if context is not None and config.max_new_tokens >= context:
        raise RecipeError(f"generate.max_new_tokens ({config.max_new_tokens}) leaves no room for a prompt in the model's {context} positions")
    rows, skipped = read_prompts(config.prompts, config.split, config.max_prompts)
    rows, prompt_ids, too_long = check_lengths(rows, renderer, context - config.max_new_tokens if context else float("inf"), config.prompts)
    skipped += too_long
    if not rows:
        raise RecipeError(f"no usable prompts in {config.prompts} ({dict(skipped)})")
    if check is not None:
        check(rows)
    settings = {
        "stage": "generate", "model": model_config.model_name_or_path, "prompts": fingerprint(prompt_ids),
        "seeds": config.seeds, "temperature": config.temperature, "top_p": config.top_p,
        "max_new_tokens": config.max_new_tokens, "backend": backend_name, "dtype": config.dtype,
    }
    output = ShardedOutput(config.output, settings, len(rows), config.shard_size)
    pending = output.pending()
    if pending:
        logger.info("generate: %d prompts x %d seeds, %d of %d shards to do", len(rows), len(config.seeds), len(pending), output.shard_count)
        backend = open_backend(backend_name, model_config, tokenizer, renderer.stop_ids, config.batch_size, config.dtype)
        done = len(rows) - sum(len(output.shard_rows(i)) for i in pending)
        progress = tqdm(total=len(rows), initial=done, unit="prompt", desc="generate")
        start, tokens = time.perf_counter(), 0
        for index in pending:
            numbers = list(output.shard_rows(index))
            responses = []
            for seed in config.seeds:
                # vLLM seeds each request; transformers samples a batch at a time (see the module doc).
                shard_seed = seed if backend_name == "vllm" else seed * 1_000_003 + index * 1_009
                texts, count = backend.generate([prompt_ids[i] for i in numbers], shard_seed, config.temperature, config.top_p, config.max_new_tokens)
                responses.append(texts)
                tokens += count
            output.write(index, [
                {"prompt_id": rows[i].prompt_id, "prompt": rows[i].prompt, "all_generated_responses": [r[j] for r in responses],
                 "seeds": config.seeds, "row": rows[i].row, **rows[i].extra}
                for j, i in enumerate(numbers)
            ])
            progress.update(len(numbers))
            progress.set_postfix(tokens_per_s=f"{tokens / (time.perf_counter() - start):.0f}")
        progress.close()
    output.mark_complete()
    if skipped:
        logger.warning("generate: skipped %d prompts: %s", sum(skipped.values()), ", ".join(f"{n} {why}" for why, n in skipped.items()))
    return config.output
