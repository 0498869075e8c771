"""Throughput and peak memory of a SimPO step: simpo against TRL 1.16's CPOTrainer, in one run.

    python benchmarks/throughput.py smollm2            # bundled SmolLM2, max_length 1024, fp32 and bf16
    python benchmarks/throughput.py gemma2-256k        # Gemma-2 config, 256,000-token vocabulary, max_length 2048
    python benchmarks/throughput.py gemma3-270m        # the bundled Gemma-3-270M (`make gemma`), 262,144-token vocabulary, max_length 1024

Each trainer runs on the same pairs, 2 per step, twice, each time in a fresh process: once timed
and once for its peak memory (the sampler would slow the timed run). Trainers: `simpo` (defaults:
packed pairs with shared prompts, chunked response log-probs), `simpo-padded` (packing and chunking
off), both with glibc's allocator set as `simpo` sets it (`simpo.ops.allocator`), `trl` (`CPOTrainer`,
`loss_type="simpo"`, `cpo_alpha=0`, `simpo_gamma = beta * gamma_beta_ratio`, the allocator as it
comes) and `trl-kept-memory` (TRL with simpo's allocator setting). Reported: the pairs' tokens
(prompt counted with each response, no padding) per second of training, seconds per step
(median), peak memory during training (live heap on the CPU, allocated on a GPU; the weights
included), the whole process's peak resident memory (VmHWM, of the timed run: model load, data
and libraries included, and what malloc keeps after a free), and model FLOPs utilisation: the FLOPs of the work each trainer does (6 x body
parameters x tokens through the body, a shared prompt once; 6 x hidden x vocab x response tokens;
causal attention per sequence) per second, over the matmul rate torch reaches on this machine,
measured here. TRL is installed only for benchmarks (`make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

BETA, GAMMA_BETA_RATIO = 2.5, 0.5
SETTINGS = {
    # model: (max_length, prompt median, response median, prompt cap, response cap, steps, activation checkpointing)
    "smollm2": (1024, 120, 250, 450, 480, 8, False),
    "gemma2-256k": (2048, 400, 1000, 900, 1050, 2, True),  # checkpointing as in the official recipes
    "gemma3-270m": (1024, 120, 250, 450, 480, 4, False),
}
BUNDLED = {"smollm2": "smollm2-135m-instruct", "gemma3-270m": "gemma3-270m"}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a square matmul, the best of `repeats` after a warm-up."""
    a = torch.randn(size, size, dtype=dtype, device=device())
    b = torch.randn(size, size, dtype=dtype, device=device())
    best = float("inf")
    for i in range(repeats + 2):
        if device() == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device() == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def tokenizer_dir(name: str = "smollm2") -> Path:
    """The bundled model folder whose tokenizer a benchmark model uses (SmolLM2's for the Gemma-2 config)."""
    from simpo.models.bundled import bundled_model_dir

    return bundled_model_dir(BUNDLED.get(name, "smollm2-135m-instruct"))


def build_model(name: str, model_dir: str | None):
    from transformers import AutoModelForCausalLM, Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if name in BUNDLED:
        folder = Path(model_dir) if model_dir else tokenizer_dir(name)
        if (folder / "model.safetensors").exists():
            return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        if name == "gemma3-270m":
            raise SystemExit(f"{folder} holds no weights: `make gemma` converts the bundled Gemma-3-270M")
        return LlamaForCausalLM(LlamaConfig.from_pretrained(folder))  # same shapes, random weights (GPU box)
    config = Gemma2Config(
        vocab_size=256000, hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, query_pre_attn_scalar=64, sliding_window=4096, max_position_embeddings=4096,
        pad_token_id=2, eos_token_id=2, bos_token_id=1,
    )
    config._attn_implementation = "eager"  # Gemma-2's soft-capped attention
    return Gemma2ForCausalLM(config)


def body_parameters(model) -> int:
    skip = {id(p) for p in model.get_input_embeddings().parameters()} | {id(p) for p in model.get_output_embeddings().parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


class StepTimer:
    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer._sync()
                timer.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer._sync()
                timer.steps.append(time.perf_counter() - timer.start)

        self.steps: list[float] = []
        self.callback = Callback()

    @staticmethod
    def _sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()


class PeakMemory:
    """Peak memory in use during a block: CUDA's allocator count, or on the CPU the live heap
    (glibc `mallinfo2`: bytes in use, mmapped blocks included) sampled every millisecond. The
    resident set size would count memory that malloc keeps after a free."""

    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            return self
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        self._live = lambda: (lambda m: m.uordblks + m.hblkhd)(libc.mallinfo2())
        self.peak, self._running = self._live(), True

        def sample():
            while self._running:
                self.peak = max(self.peak, self._live())
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._running = False
            self._thread.join()

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def peak_resident_mb() -> float:
    """The process's peak resident set size so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(options) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from ufshape import uf_shaped_rows

    max_length, prompt_median, response_median, prompt_cap, response_cap, steps, checkpointing = SETTINGS[options.model]
    steps = options.steps or steps
    tokenizer = AutoTokenizer.from_pretrained(options.model_dir or tokenizer_dir(options.model))
    rows = uf_shaped_rows(tokenizer, 2 * steps, seed=0, prompt_median=prompt_median, response_median=response_median,
                          prompt_cap=prompt_cap, response_cap=response_cap)
    model = build_model(options.model, options.model_dir)
    common = dict(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=2, max_steps=steps, learning_rate=1e-6,
        bf16=options.dtype == "bf16", save_strategy="no", logging_steps=10**6, report_to="none", disable_tqdm=True,
        use_cpu=device() == "cpu", seed=0,
    )
    timer = StepTimer()
    if options.framework != "trl":
        from simpo.ops.allocator import keep_freed_memory

        keep_freed_memory()
    if options.framework.startswith("trl"):
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        # TRL's own defaults turn checkpointing on; both trainers get the same setting here.
        args = CPOConfig(loss_type="simpo", cpo_alpha=0.0, beta=BETA, simpo_gamma=BETA * GAMMA_BETA_RATIO, max_length=max_length,
                         gradient_checkpointing=checkpointing, **common)
        # Shuffled as simpo's data set is (its mixer shuffles with seed 42), so both see the same batches in the same order.
        data = Dataset.from_list(rows).shuffle(seed=42)
        trainer = CPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[timer.callback])

        def lengths(r):
            return len(r["prompt_input_ids"]), len(r["chosen_input_ids"]) - len(r["prompt_input_ids"]), len(r["rejected_input_ids"]) - len(r["prompt_input_ids"])
    else:
        from simpo.config.recipe import build_recipe
        from simpo.data.dataset import build_pair_datasets
        from simpo.data.encode import PairEncoder
        from simpo.training.trainer import SimPOTrainer

        data_file = Path(common["output_dir"]) / "pairs.jsonl"
        data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
        packed = options.framework == "simpo"
        recipe = build_recipe({
            "model_name_or_path": options.model, "dataset_mixer": {str(data_file): 1.0}, "dataset_splits": ["train"],
            "beta": BETA, "gamma_beta_ratio": GAMMA_BETA_RATIO, "max_length": max_length, "max_prompt_length": max_length - 1,
            "padding_free": packed, "logps_chunk_size": 256 if packed else 0, "activation_checkpointing": checkpointing, **common,
        })
        encoder = PairEncoder(tokenizer, max_length, max_length - 1)
        data, _ = build_pair_datasets(recipe.data, encoder)
        trainer = SimPOTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=data, callbacks=[timer.callback])

        def lengths(r):
            return len(r["prompt_ids"]), len(r["chosen_ids"]), len(r["rejected_ids"])

    if options.measure == "memory":
        with PeakMemory() as memory:
            trainer.train()
        return {"peak_mb": memory.mb}
    config = model.config
    attention_width = config.num_attention_heads * getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
    shared = options.framework == "simpo" and trainer.data_collator.share_prompt
    batches = []  # per batch, in the order the data loader builds them: (the pairs' tokens, FLOPs)

    def count(features):
        pairs = [lengths(f) for f in features]
        # FLOPs of the work each trainer does: a shared prompt goes through the body once.
        body_tokens = sum((1 if shared else 2) * p + c + r for p, c, r in pairs)
        flops = (6 * body_parameters(model) * body_tokens + 6 * config.hidden_size * config.vocab_size * sum(c + r for _, c, r in pairs)
                 + 6 * config.num_hidden_layers * attention_width * sum((p + c) ** 2 + (p + r) ** 2 for p, c, r in pairs))
        batches.append((sum(2 * p + c + r for p, c, r in pairs), flops))  # tokens/s counts the pairs' tokens, for every trainer
        return collate(features)

    collate, trainer.data_collator = trainer.data_collator, count
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    batches = batches[: len(timer.steps)]  # (the data loader may build one batch ahead)
    # After the first step, which pays one-off costs (the optimizer state's first touch, kernel set-up).
    after_first = sum(timer.steps[1:])
    return {"framework": options.framework, "dtype": options.dtype, "steps": steps, "seconds": seconds, "after_first_seconds": after_first,
            "tokens": sum(t for t, _ in batches), "after_first_tokens": sum(t for t, _ in batches[1:]),
            "after_first_flops": sum(f for _, f in batches[1:]), "step_seconds": statistics.median(timer.steps),
            "rss_peak_mb": peak_resident_mb()}


def timed_then_sampled(run) -> dict:
    """`run(measure)`, each a fresh process: once timed, then once with the peak-memory sampler
    (whose lock on the allocator, every millisecond, would slow the timed run by a third)."""
    timed = run("time")
    return timed if "failed" in timed else {**timed, **run("memory")}


def run_worker(model: str, framework: str, dtype: str, extra: list[str], memory_limit_gb: float | None) -> dict:
    return timed_then_sampled(lambda measure: _run_worker(model, framework, dtype, extra + ["--measure", measure], memory_limit_gb))


def _run_worker(model: str, framework: str, dtype: str, extra: list[str], memory_limit_gb: float | None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, __file__, model, "--worker", framework, "--dtype", dtype, "--out", out.name, *extra]
        env = dict(os.environ, TRL_EXPERIMENTAL_SILENCE="1", TOKENIZERS_PARALLELISM="false")

        def limit():
            if memory_limit_gb:
                cap = int(memory_limit_gb * 2**30)
                resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        result = subprocess.run(command, env=env, preexec_fn=limit, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            return {"framework": framework, "dtype": dtype, "failed": tail[0][:160]}
        return json.loads(Path(out.name).read_text())


def table(results: list[dict], peaks: dict[str, float]) -> str:
    lines = ["| dtype | trainer | tokens/s | s/step | peak memory (MB) | MFU | tokens/s vs TRL | vs TRL, same allocator | memory vs TRL "
             "| whole run: tokens/s, vs TRL | peak resident (MB), vs TRL |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def rate(r):
        return r["after_first_tokens"] / r["after_first_seconds"]

    for dtype in dict.fromkeys(r["dtype"] for r in results):
        rows = [r for r in results if r["dtype"] == dtype]
        trl, kept = (next((r for r in rows if r["framework"] == name and "failed" not in r), None) for name in ("trl", "trl-kept-memory"))
        for r in rows:
            if "failed" in r:
                lines.append(f"| {dtype} | {r['framework']} | failed: {r['failed']} | | | | | | | | |")
                continue
            whole = r["tokens"] / r["seconds"]
            mfu = r["after_first_flops"] / r["after_first_seconds"] / peaks[dtype]
            speed = f"{rate(r) / rate(trl):.2f}x" if trl else "TRL failed"
            same_allocator = f"{rate(r) / rate(kept):.2f}x" if kept else "-"
            whole_speed = f"{whole / (trl['tokens'] / trl['seconds']):.2f}x" if trl else "TRL failed"
            memory = f"{r['peak_mb'] / trl['peak_mb']:.2f}x" if trl else "TRL failed"
            resident = f"{r['rss_peak_mb']:,.0f}, " + (f"{r['rss_peak_mb'] / trl['rss_peak_mb']:.2f}x" if trl else "TRL failed")
            lines.append(f"| {dtype} | {r['framework']} | {rate(r):,.0f} | {r['step_seconds']:.2f} | {r['peak_mb']:,.0f} | {mfu:.1%} | {speed} "
                         f"| {same_allocator} | {memory} | {whole:,.0f}, {whole_speed} | {resident} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(SETTINGS))
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--trainers", default="simpo,simpo-padded,trl,trl-kept-memory")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps per trainer (0: the model's default)")
    parser.add_argument("--model-dir", default=None, help="the model's folder (SmolLM2: random weights when it holds only a config)")
    parser.add_argument("--memory-limit-gb", type=float, default=20.0, help="address-space cap per CPU worker")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("time", "memory"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        options.framework = options.worker
        Path(options.out).write_text(json.dumps(worker(options)))
        return
    extra = ["--steps", str(options.steps)] + (["--model-dir", options.model_dir] if options.model_dir else [])
    limit = options.memory_limit_gb if device() == "cpu" else None
    results, peaks = [], {}
    for dtype in options.dtypes.split(","):
        peaks[dtype] = matmul_peak(torch.float32 if dtype == "fp32" else torch.bfloat16)
        for framework in options.trainers.split(","):
            results.append(run_worker(options.model, framework, dtype, extra, limit))
            print(json.dumps(results[-1]), flush=True)
    where = describe()
    print(f"\n{options.model} on {where}; matmul peak: " + ", ".join(f"{d} {p / 1e9:,.0f} GFLOP/s" for d, p in peaks.items()))
    print(table(results, peaks))


if __name__ == "__main__":
    main()
