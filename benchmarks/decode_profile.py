"""Where a generation run's time goes: the engine of `simpo generate` in one process, its parts timed.

    python benchmarks/decode_profile.py --long --prompts 32            # AlpacaEval, 2 seeds, T 0.5, 512 new tokens
    python benchmarks/decode_profile.py                                # the pipeline's 64-token answers, 5 seeds
    python benchmarks/decode_profile.py --long --prompts 32 --src /tmp/simpo-9e7b727/src   # another tree's engine

Prints the seconds of decode forward passes (of them, attention), prefills, choosing tokens, cache
surgery (placing rows, rebuilding, dropping columns) and the rest (the engine's Python), with the
decode steps' mean rows, the cache's mean width and the fraction of the (rows x width) cells that
hold a row's own tokens; and torch.profiler's top operators over a few decode steps with --ops.
Timers wrap functions with perf_counter (the CPU runs synchronously), so the parts add up to the
whole; run it on an idle machine and compare trees back to back.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="AlpacaEval instructions x 2 seeds, T 0.5, top_p 1.0, 512 new tokens")
    parser.add_argument("--prompts", type=int, help="how many prompts (default 240, --long 100)")
    parser.add_argument("--batch-size", type=int, help="prompts a batch (default: generate.batch_size's default)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--src", help="import simpo from this folder (another commit's tree)")
    parser.add_argument("--ops", action="store_true", help="also torch.profiler's top operators over decode steps 100-103")
    options = parser.parse_args()
    if options.src:
        sys.path.insert(0, options.src)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simpo.config.pipeline import GenerateConfig
    from simpo.evals.benchmarks import alpaca_eval
    from simpo.generation import engine as engine_module
    from simpo.generation import kv_cache
    from simpo.generation.backends import TransformersBackend
    from simpo.generation.prompts import PromptRenderer, prompt_messages, read_prompts
    from simpo.generation.sampling import Sampler
    from simpo.models.bundled import bundled_model_dir
    from simpo.models.precision import resolve_dtype
    from simpo.ops import decode_attention
    from simpo.ops.allocator import keep_freed_memory

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import describe

    keep_freed_memory()
    dtype = resolve_dtype(options.dtype)
    folder = bundled_model_dir("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    renderer = PromptRenderer(tokenizer)
    count = options.prompts or (100 if options.long else 240)
    if options.long:
        questions = [item["instruction"] for item in alpaca_eval("offline")[1][:count]]
        seeds, temperature, top_p, max_new_tokens = [13, 21], 0.5, 1.0, 512
    else:
        questions = [row.prompt for row in read_prompts(str(REPO / "data/verifiable-prompts"), "train", count, unique=True)[0]]
        seeds, temperature, top_p, max_new_tokens = [13, 21, 42, 79, 100], 0.8, 0.95, 64
    prompts = [renderer.ids(prompt_messages(q, "")) for q in questions]
    batch = options.batch_size or GenerateConfig().batch_size
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()

    seconds: dict[str, float] = collections.defaultdict(float)
    steps: list[tuple[int, int, int]] = []  # per decode step: rows, cache width, cells holding a row's own tokens
    depth = [0]

    def timed(owner, name: str, part: str):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if depth[0]:
                return original(*args, **kwargs)
            depth[0] += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[part] += time.perf_counter() - start
                depth[0] -= 1

        setattr(owner, name, wrapper)

    forward = model.forward

    def timed_forward(*args, **kwargs):
        start = time.perf_counter()
        out = forward(*args, **kwargs)
        decode = kwargs["input_ids"].shape[1] == 1
        seconds["decode forward" if decode else "prefill"] += time.perf_counter() - start
        if decode:
            mask = kwargs["attention_mask"]
            steps.append((mask.shape[0], mask.shape[1], int(mask.sum())))
            if options.ops and len(steps) == 100:
                profiler.__enter__()
            if options.ops and len(steps) == 104:
                profiler.__exit__(None, None, None)
        return out

    model.forward = timed_forward
    attention = decode_attention.decode_attention

    def timed_attention(*args, **kwargs):
        start = time.perf_counter()
        out = attention(*args, **kwargs)
        seconds["  of it attention"] += time.perf_counter() - start
        return out

    decode_attention.decode_attention = timed_attention
    timed(Sampler, "choose", "choosing tokens")
    for name in ("place", "splice"):
        timed(kv_cache.GrowingLayer, name, "cache surgery")
    timed(engine_module.Engine, "_make_room", "cache surgery")
    from torch.profiler import profile

    profiler = profile()
    backend = TransformersBackend(model, tokenizer, renderer.stop_ids, batch)
    start = time.perf_counter()
    tokens = sum(count for _, _, count in backend.sample_shards([prompts], seeds, temperature, top_p, max_new_tokens))
    total = time.perf_counter() - start
    print(f"{describe()}; {dtype}; simpo from {options.src or 'this tree'}")
    print(f"{len(prompts)} prompts x {len(seeds)} seeds, {batch} prompts a batch, max_new_tokens {max_new_tokens}, "
          f"temperature {temperature}, top_p {top_p}: {tokens} tokens in {total:.1f} s ({tokens / total:.1f} tokens/s, engine only)")
    rows = sum(r for r, _, _ in steps)
    print(f"{len(steps)} decode steps: {rows / len(steps):.1f} rows and {sum(w for _, w, _ in steps) / len(steps):.0f} cache columns a step "
          f"on average; {sum(live for _, _, live in steps) / sum(r * w for r, w, _ in steps):.0%} of the cells a row's own")
    rest = total - sum(value for key, value in seconds.items() if not key.startswith(" "))
    for part, value in [*seconds.items(), ("the rest (engine Python, logits copies)", rest)]:
        print(f"  {part:<42} {value:8.1f} s  {value / total:6.1%}")
    if options.ops:
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
