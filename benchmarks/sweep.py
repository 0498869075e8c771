"""A 2 x 2 `simpo sweep` against the four `simpo train` runs it stands for, each command timed whole.

    python benchmarks/sweep.py                      # bundled SmolLM2-135M, recipes/smollm2-135m-simpo.yaml, 20 steps a trial
    python benchmarks/sweep.py --steps 2 --max-length 128 --model /path/to/model --eval-rows 8   # a check that it runs

The same four settings (learning rate x beta) on the bundled pairs, each evaluated on the held-out
pairs before and after training: once as one `simpo sweep` command (one process; the pairs
tokenized once), then as four `simpo train` commands, one after another (each imports, loads and
tokenizes for itself). Reported: each command's wall time, the sweep's table, and the largest
difference between a trial's final weights and its single run's (the same steps: zero, or
floating-point noise). Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
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


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, env=os.environ, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="max_steps of each trial")
    parser.add_argument("--learning-rates", default="1e-5,2e-5")
    parser.add_argument("--betas", default="2.5,10")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-length", type=int, default=0, help="max_length (prompt: half); 0: the recipe's")
    parser.add_argument("--eval-rows", type=int, default=0, help="held-out pairs: the first N of the test split (a folder of them is written); 0: all 200")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    from safetensors.torch import load_file

    scratch = Path(tempfile.mkdtemp(prefix="simpo-sweep-"))
    common = ["--max_steps", str(options.steps), "--model_name_or_path", options.model, "--save_strategy", "no", "--do_eval", "true"]
    if options.max_length:
        common += ["--max_length", str(options.max_length), "--max_prompt_length", str(options.max_length // 2)]
    if options.eval_rows:
        data = scratch / "pairs"
        data.mkdir()
        (data / "train.jsonl").write_text((REPO / "data" / "verifiable-prefs" / "train.jsonl").read_text())
        test = (REPO / "data" / "verifiable-prefs" / "test.jsonl").read_text().splitlines(keepends=True)
        (data / "test.jsonl").write_text("".join(test[: options.eval_rows]))
        common += ["--dataset_mixer", json.dumps({str(data): 1.0})]
    simpo = [sys.executable, "-m", "simpo"]
    sweep_s = timed([*simpo, "sweep", str(RECIPE), "--learning_rate", options.learning_rates, "--beta", options.betas,
                     "--output_dir", str(scratch / "sweep"), *common])
    singles, difference = [], 0.0
    for learning_rate, beta in itertools.product(options.learning_rates.split(","), options.betas.split(",")):
        folder = scratch / f"train-{learning_rate}-{beta}"
        seconds = timed([*simpo, "train", str(RECIPE), "--learning_rate", learning_rate, "--beta", beta, "--output_dir", str(folder), *common])
        singles.append({"learning_rate": learning_rate, "beta": beta, "wall_s": seconds})
        trial = load_file(scratch / "sweep" / f"trial-learning_rate={learning_rate}-beta={beta}" / "model.safetensors")
        single = load_file(folder / "model.safetensors")
        difference = max(difference, *((trial[key].float() - single[key].float()).abs().max().item() for key in single))
    table = (scratch / "sweep" / "sweep.md").read_text().split("\n\n")[3]  # sweep.md: title, command, settings, table
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    header = {"machine": describe(), "cores": os.cpu_count(), "date": datetime.date.today().isoformat(), "commit": commit,
              "command": " ".join(["python", "benchmarks/sweep.py", *sys.argv[1:]]), "steps": options.steps}
    results = {"sweep_wall_s": sweep_s, "train_runs": singles, "train_wall_s": sum(entry["wall_s"] for entry in singles),
               "max_weight_difference": difference, "table": table}
    if options.json:
        print(json.dumps({**header, **results}, indent=2))
        return
    print(f"{header['machine']}, {header['cores']} cores; {header['date']}, commit {commit}; `{header['command']}`")
    print(f"{options.steps} steps a trial, {options.model}\n")
    print("| command | wall s |\n|---|---:|")
    print(f"| simpo sweep, {len(singles)} trials | {sweep_s:.1f} |")
    for entry in singles:
        print(f"| simpo train --learning_rate {entry['learning_rate']} --beta {entry['beta']} | {entry['wall_s']:.1f} |")
    print(f"| the {len(singles)} simpo train runs | {results['train_wall_s']:.1f} |\n")
    print(f"sweep / separate runs: {sweep_s / results['train_wall_s']:.2f}; largest weight difference, trial vs its run: {difference:.1e}\n")
    print(table)


if __name__ == "__main__":
    main()
