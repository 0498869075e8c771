"""Generation throughput and decode MFU, whole process: simpo's engine, the backend before it, and
plain batched `model.generate`, on the same prompts with the same settings.

    python benchmarks/generation.py                  # the pipeline's settings (below), dtype auto
    python benchmarks/generation.py --long           # long answers: 100 AlpacaEval instructions x 2 seeds, 512 new tokens
    python benchmarks/generation.py --dtype float32 --engines simpo,previous

The pipeline's settings: the bundled arithmetic prompts (data/verifiable-prompts), 240 of them x the
official five seeds, temperature 0.8, top_p 0.95, 64 new tokens, 96 prompts a batch (480 rows),
shards of 48 (recipes/smollm2-135m-pipeline.yaml samples 120 of them). Each engine runs in a process of its own, timed from its start to its exit (imports,
model load, prefill and decode): `simpo` is this tree's `TransformersBackend.sample_shards`
(continuous batching); `previous` is the transformers backend of commit 735967c (static batches of
a shard's prompts x 5 seeds whose finished rows leave, SDPA, full-vocabulary multinomial), run from a git
worktree of that commit; `generate` is transformers' own loop, `num_return_sequences` 5, on the
same batches; `generate_batch` is transformers' continuous batching (paged attention, SDPA), its
default scheduler, all prompts at once; `vllm` is simpo's vllm backend on the vLLM build of
.venv-vllm (`make vllm`), every shard's requests sent at once. Tokens are the generated tokens up to
and including the end-of-turn token. Decode MFU = tokens/s (whole process) x 2 x parameters / the
matmul peak measured here in that dtype (a 2048^3 matmul); "tokens/s generating" leaves out the
imports and the model's load (and vLLM's engine start).
Emulate a CPU without native bf16 with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREVIOUS = "735967c"
SEEDS = [13, 21, 42, 79, 100]


def matmul_peak(dtype) -> float:
    import torch

    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    best = float("inf")
    for _ in range(30):  # the best of many: a busy machine slows some
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best


def worker(engine: str, settings: dict) -> None:
    """Generate as `engine` does and print the tokens generated (run in a process of its own)."""
    if engine == "previous":
        sys.path.insert(0, settings["previous_src"])
    elif engine.startswith("simpo@"):  # this script's engine from the tree of another commit
        sys.path.insert(0, str(worktree(engine.split("@", 1)[1]) / "src"))
        engine = "simpo"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simpo.ops.allocator import keep_freed_memory

    keep_freed_memory()  # as the CLI does
    tokenizer = AutoTokenizer.from_pretrained(settings["model"])
    prompts, seeds, batch, stops = settings["prompts"], settings["seeds"], settings["batch_size"], settings["stop_ids"]
    shards = [prompts[i : i + settings["shard_size"]] for i in range(0, len(prompts), settings["shard_size"])]
    sampling = (settings["temperature"], settings["top_p"], settings["max_new_tokens"])
    tokens = 0
    if engine == "vllm":  # vLLM's build in .venv-vllm (`make vllm`), through simpo's vllm backend
        from simpo.generation.vllm_backend import VLLMBackend

        backend = VLLMBackend(settings["model"], tokenizer, settings["dtype"], False, stops)
        start = time.perf_counter()
        tokens = sum(count for _, _, count in backend.sample_shards(shards, seeds, *sampling))
        print(json.dumps({"tokens": tokens, "generating": time.perf_counter() - start}))
        return
    attention = {"attn_implementation": "paged|sdpa"} if engine == "generate_batch" else {}
    model = AutoModelForCausalLM.from_pretrained(settings["model"], dtype=getattr(torch, settings["dtype"]), **attention).eval()
    start = time.perf_counter()
    if engine == "generate_batch":
        from transformers import GenerationConfig

        config = GenerationConfig(do_sample=True, temperature=sampling[0], top_p=sampling[1], top_k=0, max_new_tokens=sampling[2],
                                  num_return_sequences=len(seeds), eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
        with torch.inference_mode():
            outputs = model.generate_batch(inputs=prompts, generation_config=config)
        tokens = sum(len(output.generated_tokens) for output in outputs.values())
    elif engine == "generate":
        pad = tokenizer.pad_token_id
        for b, start in enumerate(range(0, len(prompts), batch)):
            chunk = prompts[start : start + batch]
            width = max(map(len, chunk))
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in chunk])
            mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in chunk])
            torch.manual_seed(b)
            with torch.inference_mode():
                output = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=sampling[0], top_p=sampling[1],
                                        top_k=0, max_new_tokens=sampling[2], num_return_sequences=len(seeds), eos_token_id=stops,
                                        pad_token_id=pad)
            for new in output[:, width:].tolist():
                end = next((i for i, token in enumerate(new) if token in stops), None)
                tokens += len(new) if end is None else end + 1
    else:
        from simpo.generation.backends import TransformersBackend

        backend = TransformersBackend(model, tokenizer, stops, batch)
        if engine == "simpo":
            tokens = sum(count for _, _, count in backend.sample_shards(shards, seeds, *sampling))
        else:
            tokens = sum(backend.sample(shard, seeds, index, *sampling)[1] for index, shard in enumerate(shards))
    print(json.dumps({"tokens": tokens, "generating": time.perf_counter() - start}))


def worktree(commit: str) -> Path:
    """A git worktree of `commit`, made once in the temporary folder."""
    folder = Path(tempfile.gettempdir()) / f"simpo-{commit}"
    if not folder.is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), commit], check=True, capture_output=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="the evaluation's long answers: 100 AlpacaEval instructions x 2 seeds, "
                        "temperature 0.5, top_p 1.0, 512 new tokens, generate.batch_size's default a batch")
    parser.add_argument("--prompts", type=int, help="how many prompts (default 240, --long 100)")
    parser.add_argument("--seeds", type=int, help="how many seeds (default 5, --long 2)")
    parser.add_argument("--batch-size", type=int, help="prompts a batch (default 96, --long generate.batch_size's default)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--engines", default="simpo,previous,generate",
                        help="any of simpo, simpo@COMMIT (simpo's engine at that commit), previous, generate, generate_batch, "
                        "vllm (vLLM's build in .venv-vllm: `make vllm`)")
    parser.add_argument("--repeat", type=int, default=1, help="run the engines this many times, alternating; ratios of the best")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(options.worker, json.loads(Path(options.settings).read_text()))
        return

    import torch
    from transformers import AutoConfig, AutoTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import describe

    from simpo.evals.benchmarks import alpaca_eval
    from simpo.generation.prompts import PromptRenderer, prompt_messages, read_prompts
    from simpo.models.bundled import bundled_model_dir
    from simpo.models.precision import resolve_dtype

    dtype = resolve_dtype(options.dtype)
    folder = bundled_model_dir("smollm2-135m-instruct")
    renderer = PromptRenderer(AutoTokenizer.from_pretrained(folder))
    from simpo.config.pipeline import GenerateConfig

    count = options.prompts or (100 if options.long else 240)
    if options.long:
        questions = [item["instruction"] for item in alpaca_eval("offline")[1][:count]]
    else:
        questions = [row.prompt for row in read_prompts(str(REPO / "data/verifiable-prompts"), "train", count, unique=True)[0]]
    settings = {
        "model": str(folder), "dtype": dtype, "prompts": [renderer.ids(prompt_messages(q, "")) for q in questions],
        "seeds": SEEDS[: options.seeds or (2 if options.long else 5)],
        "batch_size": options.batch_size or (GenerateConfig().batch_size if options.long else 96),
        "shard_size": 48, "temperature": 0.5 if options.long else 0.8, "top_p": 1.0 if options.long else 0.95,
        "max_new_tokens": 512 if options.long else 64,
        "stop_ids": renderer.stop_ids, "previous_src": str(worktree(PREVIOUS) / "src"),
    }
    config = AutoConfig.from_pretrained(folder)
    from transformers import AutoModelForCausalLM

    parameters = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    peak = matmul_peak(getattr(torch, dtype))
    print(f"{describe()}; SmolLM2-135M-Instruct ({parameters / 1e6:.1f}M parameters) {dtype}, matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{len(settings['prompts'])} prompts x {len(settings['seeds'])} seeds, {settings['batch_size']} prompts a batch, "
          f"max_new_tokens {settings['max_new_tokens']}, temperature {settings['temperature']}, top_p {settings['top_p']}")
    print("| engine | tokens | seconds (whole process) | CPU seconds | tokens/s | decode MFU | tokens/s generating |\n|---|---|---|---|---|---|---|")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(settings, file)
    rates: dict[str, list[float]] = {}
    for _ in range(options.repeat):  # engines alternate, so that a change in the machine's load falls on all of them
        for engine in options.engines.split(","):
            start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            python = str(REPO / ".venv-vllm" / "bin" / "python") if engine == "vllm" else sys.executable
            # A session of its own, killed whole when the worker exits: a process it left behind (vLLM's
            # engine core) would take cores from the next engine.
            done = subprocess.Popen([python, __file__, "--worker", engine, "--settings", file.name], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, start_new_session=True)
            done.stdout, done.stderr = done.communicate()
            seconds, used = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
            try:
                os.killpg(done.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if done.returncode:
                sys.exit(f"{engine} failed:\n{done.stderr[-3000:]}")
            counted = json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith('{"tokens"')))  # vLLM logs to stdout
            tokens = counted["tokens"]
            rates.setdefault(engine, []).append(tokens / seconds)
            cpu_seconds = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
            print(f"| {engine} | {tokens} | {seconds:.1f} | {cpu_seconds:.1f} | {tokens / seconds:.1f} | "
                  f"{tokens / seconds * 2 * parameters / peak:.1%} | {tokens / counted['generating']:.1f} |", flush=True)
    best = {engine: max(values) for engine, values in rates.items()}
    if options.repeat > 1:
        print("best of each: " + ", ".join(f"{engine} {rate:.1f} tokens/s ({rate * 2 * parameters / peak:.1%})" for engine, rate in best.items()))
    for other in [engine for engine in best if engine != "simpo"]:
        if "simpo" in best:
            print(f"simpo / {other}: {best['simpo'] / best[other]:.2f}x")

if __name__ == "__main__":
    main()
