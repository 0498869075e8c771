"""`simpo generate`: N responses per prompt from the policy, resumable, with a recorded seed each.

Under the `transformers` backend the prompts of all pending shards flow through one continuously
refilled batch, all seeds of a prompt sharing its prefill, and a shard is written as soon as its
last prompt finishes; each sample draws from a stream seeded by its seed and its prompt (see
`generation.backends`), so a rerun with the same settings reproduces the same text on the same
machine; under `vllm` each request gets its seed, as the official scripts do. Sampling follows the official settings (temperature, top_p; no top-k).

Output rows: `prompt_id`, `prompt` (as given), `all_generated_responses` (one per seed),
`response_tokens` (each response's token count, its stop token aside), `truncated` (whether each
response hit `max_new_tokens` without a stop token; folders written before these two were recorded
lack them), `seeds`, `row` (the input row number), and the input row's other fields (e.g. `answer`).
"""

from __future__ import annotations

import logging
import time

from ..config.pipeline import GenerateConfig
from ..errors import RecipeError
from ..generation.backends import open_backend, pick_backend, sampling_dtype
from ..generation.prompts import PromptRenderer, check_lengths, read_prompts
from ..models.loading import load_model_config, load_tokenizer
from .lock import folder_lock
from .shards import ShardedOutput, fingerprint

logger = logging.getLogger("simpo")


def run_generate(model_config, config: GenerateConfig, check=None, part: tuple[int, int] | None = None) -> str:
    """Generate into `config.output`, continuing from its finished shards; returns the folder.

    `check(rows)`, when given, inspects the prompt rows before any generation (the pipeline checks
    that programmatic rewards find their reference answers). `part` = (k, n): only the k-th (from 0)
    of n contiguous, nearly equal parts of the usable prompts (the pipeline's rounds)."""
    from tqdm.auto import tqdm
    config.validate()
    backend_name = pick_backend(config.backend, model_config.model_name_or_path)
    tokenizer = load_tokenizer(model_config)
    renderer = PromptRenderer(tokenizer)
    context = getattr(load_model_config(model_config), "max_position_embeddings", None)
    if context is not None and config.max_new_tokens >= context:
        raise RecipeError(f"generate.max_new_tokens ({config.max_new_tokens}) leaves no room for a prompt in the model's {context} positions")
    rows, skipped = read_prompts(config.prompts, config.split, config.max_prompts, unique=True)
    rows, prompt_ids, too_long = check_lengths(rows, renderer, context - config.max_new_tokens if context else float("inf"), config.prompts)
    skipped += too_long
    if part is not None:
        k, n = part
        keep = range(k * len(rows) // n, (k + 1) * len(rows) // n)
        rows, prompt_ids = [rows[i] for i in keep], [prompt_ids[i] for i in keep]
    if not rows:
        raise RecipeError(f"no usable prompts in {config.prompts} ({dict(skipped)})")
    if check is not None:
        check(rows)
    dtype = sampling_dtype(config.dtype or model_config.torch_dtype, "generate.dtype")
    settings = {
        "stage": "generate", "model": model_config.model_name_or_path, "prompts": fingerprint(prompt_ids),
        "seeds": config.seeds, "temperature": config.temperature, "top_p": config.top_p,
        "max_new_tokens": config.max_new_tokens, "backend": backend_name, "dtype": dtype,
    }
    with folder_lock(config.output):  # written from here on, its input checked
        output = ShardedOutput(config.output, settings, len(rows), config.shard_size)
        pending = output.pending()
        if pending:
            logger.info("generate: %d prompts x %d seeds, %d of %d shards to do", len(rows), len(config.seeds), len(pending), output.shard_count)
            backend = open_backend(backend_name, model_config, tokenizer, renderer.stop_ids, config.batch_size, dtype)
            done = len(rows) - sum(len(output.shard_rows(i)) for i in pending)
            progress = tqdm(total=len(rows), initial=done, unit="prompt", desc="generate")
            start, tokens = time.perf_counter(), 0
            shards = [list(output.shard_rows(index)) for index in pending]
            for position, responses, count in backend.sample_shards([[prompt_ids[i] for i in numbers] for numbers in shards], config.seeds,
                                                                    config.temperature, config.top_p, config.max_new_tokens):
                numbers = shards[position]
                tokens += count
                output.write(pending[position], [
                    {"prompt_id": rows[i].prompt_id, "prompt": rows[i].prompt, "all_generated_responses": [str(text) for text in responses[j]],
                     "response_tokens": [text.tokens for text in responses[j]], "truncated": [text.truncated for text in responses[j]],
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
