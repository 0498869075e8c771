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
import os
import queue
import sys
import time
from dataclasses import dataclass
from typing import Any

from ..config.pipeline import GenerateConfig
from ..errors import DataError, RecipeError, TrainingError
from ..generation.backends import open_backend, pick_backend, sampling_dtype
from ..generation.prompts import PromptRenderer, check_lengths, read_prompts
from ..models.loading import load_model_config, load_tokenizer
from ..training.launch import launch_environment
from .lock import folder_lock
from .shards import ShardedOutput, fingerprint

logger = logging.getLogger("simpo")


def run_generate(model_config, config: GenerateConfig, check=None, part: tuple[int, int] | None = None, processes: int = 1) -> str:
    """Generate into `config.output`, continuing from its finished shards; returns the folder.

    `check(rows)`, when given, inspects the prompt rows before any generation (the pipeline checks
    that programmatic rewards find their reference answers). `part` = (k, n): only the k-th (from 0)
    of n contiguous, nearly equal parts of the usable prompts (the pipeline's rounds). `processes` > 1:
    the pending shards are shared among that many processes (`sample_in_processes`)."""
    from tqdm.auto import tqdm
    config.validate()
    backend_name = pick_backend(config.backend, model_config.model_name_or_path)
    if config.tensor_parallel_size > 1 and backend_name != "vllm":
        raise RecipeError(f"generate.tensor_parallel_size {config.tensor_parallel_size} spans GPUs with one vllm engine; the {backend_name} "
                          "backend runs a whole model in each process: drop the key, and use --nproc N for N processes")
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
            done = len(rows) - sum(len(output.shard_rows(i)) for i in pending)
            progress = tqdm(total=len(rows), initial=done, unit="prompt", desc="generate")
            start, tokens = time.perf_counter(), 0

            def report(prompts: int, count: int) -> None:
                nonlocal tokens
                tokens += count
                progress.update(prompts)
                progress.set_postfix(tokens_per_s=f"{tokens / (time.perf_counter() - start):.0f}")

            work = Work(model_config, tokenizer, config, backend_name, dtype, renderer.stop_ids, output, rows, prompt_ids)
            processes = min(processes, len(pending))
            if processes > 1:
                sample_in_processes(work, pending, processes, report)
            else:
                work.sample(pending, report)
            progress.close()
        output.mark_complete()
    if skipped:
        logger.warning("generate: skipped %d prompts: %s", sum(skipped.values()), ", ".join(f"{n} {why}" for why, n in skipped.items()))
    return config.output


@dataclass
class Work:
    """What a process needs to sample shards of one `simpo generate` run and write them (picklable,
    so that a process of `--nproc N` gets it whole)."""

    model_config: Any
    tokenizer: Any
    config: GenerateConfig
    backend_name: str
    dtype: str | None
    stop_ids: list[int]
    output: ShardedOutput
    rows: list
    prompt_ids: list[list[int]]

    def sample(self, pending: list[int], report) -> None:
        """Sample the shards `pending` and write each as it finishes; `report(prompts, tokens)` after each."""
        config = self.config
        backend = open_backend(self.backend_name, self.model_config, self.tokenizer, self.stop_ids, config.batch_size, self.dtype,
                               config.tensor_parallel_size)
        shards = [list(self.output.shard_rows(index)) for index in pending]
        for position, responses, count in backend.sample_shards([[self.prompt_ids[i] for i in numbers] for numbers in shards], config.seeds,
                                                                config.temperature, config.top_p, config.max_new_tokens):
            numbers, rows = shards[position], self.rows
            self.output.write(pending[position], [
                {"prompt_id": rows[i].prompt_id, "prompt": rows[i].prompt, "all_generated_responses": [str(text) for text in responses[j]],
                 "response_tokens": [text.tokens for text in responses[j]], "truncated": [text.truncated for text in responses[j]],
                 "seeds": config.seeds, "row": rows[i].row, **rows[i].extra}
                for j, i in enumerate(numbers)
            ])
            report(len(numbers), count)


def _process_environment(rank: int, processes: int, gpus_each: int) -> dict[str, str]:
    """Process `rank`'s environment: its own `gpus_each` GPUs on a GPU machine (the parent's visible
    ones, in order), else its share of the cores."""
    import torch

    if not torch.cuda.is_available():
        return launch_environment(processes)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    if processes * gpus_each > len(devices):
        raise RecipeError(f"--nproc {processes} x generate.tensor_parallel_size {gpus_each} needs {processes * gpus_each} GPUs; "
                          f"{len(devices)} are visible")
    return {"CUDA_VISIBLE_DEVICES": ",".join(devices[rank * gpus_each : (rank + 1) * gpus_each])}


def _sample_part(work: Work, pending: list[int], messages) -> None:
    """One process of `--nproc N`: its shards sampled and written, each announced to the parent."""
    try:
        work.sample(pending, lambda prompts, tokens: messages.put((prompts, tokens)))
    except (RecipeError, DataError) as err:  # said by the parent, in one line
        messages.put(err)
        sys.exit(2)


def _handle(message, report) -> None:
    if isinstance(message, Exception):  # a process's RecipeError or DataError
        raise message
    report(*message)


def _drain(messages, report) -> None:
    """Handle every message already in the queue."""
    while True:
        try:
            message = messages.get_nowait()
        except queue.Empty:
            return
        _handle(message, report)


def sample_in_processes(work: Work, pending: list[int], processes: int, report) -> None:
    """The shards `pending` shared round-robin among `processes` processes, each with the model and
    its own part; a failed process stops the others, and the shards written so far stay."""
    import multiprocessing

    from accelerate.utils import patch_environment

    context = multiprocessing.get_context("spawn")  # a forked process would inherit torch's threads and CUDA state
    messages = context.Queue()
    workers = []
    try:
        for rank in range(processes):
            with patch_environment(**_process_environment(rank, processes, work.config.tensor_parallel_size)):
                worker = context.Process(target=_sample_part, args=(work, pending[rank::processes], messages), name=f"generate-{rank}")
                worker.start()
            workers.append(worker)
        logger.info("generate: %d processes, %s shards each", processes, "/".join(str(len(pending[k::processes])) for k in range(processes)))
        while True:
            try:
                _handle(messages.get(timeout=1), report)
            except queue.Empty:
                pass
            failed = next((w for w in workers if w.exitcode not in (None, 0)), None)
            finished = all(w.exitcode == 0 for w in workers)
            if failed or finished:  # what a process said just before it exited is in the queue by now
                _drain(messages, report)
            if failed:
                raise TrainingError(f"generate: process {failed.name} of {processes} stopped (exit status {failed.exitcode}; "
                                    "its error is above); the shards written are kept: run the same command again to go on")
            if finished:
                return
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
