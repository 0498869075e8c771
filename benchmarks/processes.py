"""One process against two: `simpo train` at the same global batch, timed whole, on this machine's cores.

    python benchmarks/processes.py                       # bundled SmolLM2-135M, recipes/smollm2-135m-simpo.yaml, 8 steps of 8 pairs
    python benchmarks/processes.py --steps 4 --batch 4   # shorter
    python benchmarks/processes.py --model /path/to/model --max-length 128 --steps 2 --batch 4   # a check that it runs

Three runs of the CPU default recipe, each a fresh command timed whole (imports, model load,
tokenization, training, saving), one after the other, the same pairs in the same steps:
- `1 process, batch B`: OMP_NUM_THREADS = cores, per_device_train_batch_size B;
- `1 process, B/2 x 2 accumulation`: the same threads, the micro-batches the processes get;
- `2 processes, B/2 each`: `simpo train --nproc 2` (two gloo processes), OMP_NUM_THREADS = cores / 2 each.
Reported per run: the wall time, the training loop's time (transformers' `train_runtime`), the tokens
trained (`num_input_tokens_seen`: the packed rows' tokens, a shared prompt once, over all processes),
tokens per second of the loop and of the whole command, and the largest difference of the final
weights from the accumulation run's (the same steps, so floating-point noise alone). Nothing else
should run on the machine meanwhile: the processes share its cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "smollm2-135m-simpo.yaml"


def run(name: str, output_dir: Path, options, micro_batch: int, accumulation: int, processes: int, threads: int) -> dict:
    argv = [sys.executable, "-m", "simpo", "train", str(RECIPE), "--output_dir", str(output_dir), "--max_steps", str(options.steps),
            "--per_device_train_batch_size", str(micro_batch), "--gradient_accumulation_steps", str(accumulation),
            "--save_strategy", "no", "--do_eval", "false", "--logging_steps", "1", "--report_to", "none",
            "--include_num_input_tokens_seen", "true", "--model_name_or_path", options.model, "--seed", "42"]
    if options.max_length:
        argv += ["--max_length", str(options.max_length), "--max_prompt_length", str(options.max_length // 2)]
    if processes > 1:
        argv += ["--nproc", str(processes)]
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{name}: {' '.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    loop = next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
    tokens = max(entry.get("num_input_tokens_seen", 0) for entry in history)
    return {"name": name, "wall_s": wall, "loop_s": loop, "tokens": tokens, "loop_tokens_per_s": tokens / loop, "wall_tokens_per_s": tokens / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8, help="global batch B (pairs per optimizer step); even")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-length", type=int, default=0, help="max_length (prompt: half); 0: the recipe's")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    if options.batch % 2:
        parser.error("--batch must be even: two processes take B/2 each")
    from safetensors.torch import load_file

    cores = os.cpu_count() or 1
    half = options.batch // 2
    scratch = Path(tempfile.mkdtemp(prefix="simpo-processes-"))
    runs = [
        run(f"1 process, batch {options.batch}", scratch / "one", options, options.batch, 1, 1, cores),
        run(f"1 process, {half} x 2 accumulation", scratch / "accumulation", options, half, 2, 1, cores),
        run(f"2 processes, {half} each", scratch / "two", options, half, 1, 2, max(1, cores // 2)),
    ]
    reference = load_file(scratch / "accumulation" / "model.safetensors")
    for entry, folder in zip(runs, ("one", "accumulation", "two")):
        weights = load_file(scratch / folder / "model.safetensors")
        entry["max_weight_difference"] = max((weights[key].float() - reference[key].float()).abs().max().item() for key in reference)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    header = {"machine": describe(), "cores": cores, "date": datetime.date.today().isoformat(), "commit": commit,
              "command": " ".join(["python", "benchmarks/processes.py", *sys.argv[1:]]), "steps": options.steps, "batch": options.batch}
    if options.json:
        print(json.dumps({**header, "runs": runs}, indent=2))
        return
    print(f"{header['machine']}, {cores} cores; {header['date']}, commit {commit}; `{header['command']}`")
    print(f"{options.steps} steps of {options.batch} pairs, {options.model}\n")
    print("| run | wall s | train loop s | tokens | tokens/s (loop) | tokens/s (whole) | vs first (loop) | max weight diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for entry in runs:
        print(f"| {entry['name']} | {entry['wall_s']:.1f} | {entry['loop_s']:.1f} | {entry['tokens']} | {entry['loop_tokens_per_s']:.0f} | "
              f"{entry['wall_tokens_per_s']:.0f} | {entry['loop_tokens_per_s'] / runs[0]['loop_tokens_per_s']:.2f}x | "
              f"{entry['max_weight_difference']:.1e} |")


if __name__ == "__main__":
    main()
