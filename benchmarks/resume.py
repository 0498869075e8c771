"""What surviving a kill costs: checkpoint writes, and a run killed with SIGKILL then started again.

    python benchmarks/resume.py                  # bundled SmolLM2-135M, recipes/smollm2-135m-simpo.yaml, 12 steps
    python benchmarks/resume.py --steps 6 --save-steps 2

Four runs of `simpo train` on the CPU default recipe, each a fresh process timed whole (imports and
model load included), one after the other:
- `no checkpoints`: save_strategy no;
- `uninterrupted`: a checkpoint every `--save-steps` steps;
- `killed`: the same command, killed once the checkpoint at step `steps - save_steps` is complete
  (its trainer_state.json written), then `resumed`: the same command again.
Reported: each wall time, the cost of one checkpoint ((uninterrupted - no checkpoints) / checkpoints),
the resume overhead (killed + resumed - uninterrupted: the second start-up, reading the checkpoint,
and the steps after it that were lost), and whether the resumed weights equal the uninterrupted ones
bitwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "smollm2-135m-simpo.yaml"


def command(output_dir: Path, steps: int, save_steps: int | None) -> list[str]:
    saving = ["--save_strategy", "steps", "--save_steps", str(save_steps)] if save_steps else ["--save_strategy", "no"]
    return [sys.executable, "-m", "simpo.cli", "train", str(RECIPE), "--output_dir", str(output_dir), "--max_steps", str(steps),
            "--do_eval", "false", "--logging_steps", "1", "--save_total_limit", "2", *saving]


def timed(argv: list[str], until: Path | None = None) -> float:
    """Seconds the command ran: to its exit, or until `until` exists (then it is killed with SIGKILL)."""
    errors = tempfile.TemporaryFile("w+")
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors, text=True)
    while until is None or not until.exists():
        if process.poll() is not None:
            if until is None and process.returncode == 0:
                return time.perf_counter() - start
            errors.seek(0)
            raise SystemExit(f"{' '.join(argv)} ended (exit {process.returncode}) before {until}:\n{errors.read()[-3000:]}")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--save-steps", type=int, default=4)
    options = parser.parse_args()
    from safetensors.torch import load_file

    scratch = Path(tempfile.mkdtemp(prefix="simpo-resume-"))
    steps, every = options.steps, options.save_steps
    try:
        times = {"no checkpoints": timed(command(scratch / "plain", steps, None))}
        times["uninterrupted"] = timed(command(scratch / "whole", steps, every))
        killed = scratch / "killed"
        kill_at = steps - every
        times["killed"] = timed(command(killed, steps, every), until=killed / f"checkpoint-{kill_at}" / "trainer_state.json")
        times["resumed"] = timed(command(killed, steps, every))
        whole, resumed = load_file(scratch / "whole" / "model.safetensors"), load_file(killed / "model.safetensors")
        equal = whole.keys() == resumed.keys() and all(whole[name].equal(resumed[name]) for name in whole)
        checkpoint_bytes = sum(path.stat().st_size for path in (scratch / "whole" / f"checkpoint-{steps}").iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    checkpoints = steps // every
    result = {
        "machine": describe(), "steps": steps, "save_steps": every, "killed_after_checkpoint": kill_at,
        "seconds": {name: round(value, 1) for name, value in times.items()},
        "seconds_per_checkpoint": round((times["uninterrupted"] - times["no checkpoints"]) / checkpoints, 2),
        "checkpoint_gb": round(checkpoint_bytes / 1e9, 2),
        "resume_overhead_s": round(times["killed"] + times["resumed"] - times["uninterrupted"], 1),
        "resumed_bitwise_equal": equal, "tensors": len(whole),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
