"""Several processes: `simpo train RECIPE.yaml --nproc N` runs the same command as N processes under
`accelerate launch`, and a process that a launcher started is made ready for its part.

`--nproc N` re-runs `python -m simpo VERB RECIPE.yaml [overrides]` through accelerate's launcher
(torchrun underneath: `--multi_gpu`, `--num_processes N`, a free `--main_process_port`) and returns
its exit status. It is the same as `accelerate launch --num_processes N --multi_gpu -m simpo ...`:
accelerate's `MULTI_CPU` mode starts its processes with `mpirun` only, so on a machine without a GPU
the processes are started the torchrun way too, with `ACCELERATE_USE_CPU=true` and
`OMP_NUM_THREADS` = cores / N (unless already set).

A process started by a launcher (WORLD_SIZE > 1 in its environment) on a machine without a GPU is
set to the CPU (gloo), as `accelerate launch --cpu` would set it: without that, every process would
train alone as process 0 of 1. Its console prints only errors and no progress bars: the main process
speaks for all, as transformers' `log_level_replica` has it for transformers' own messages.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from ..errors import RecipeError

NPROC = "--nproc"


def launched() -> tuple[int, int] | None:
    """(this process's rank, the number of processes) when a launcher started it as one of several; else None."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return (int(os.environ.get("RANK", "0") or 0), world) if world > 1 else None


def split_nproc(tokens: list[str]) -> tuple[int | None, list[str]]:
    """`--nproc N` (or `--nproc=N`) taken out of a command's tokens: (N or None, the other tokens)."""
    rest, value, found = [], None, False
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token == NPROC or token.startswith(NPROC + "="):
            if found:
                raise RecipeError(f"{NPROC} is given twice")
            found = True
            if "=" in token:
                value = token.split("=", 1)[1]
            else:
                value = tokens[index + 1] if index + 1 < len(tokens) else ""
                index += 1
        else:
            rest.append(token)
        index += 1
    if not found:
        return None, tokens
    try:
        processes = int(value)
    except ValueError:
        processes = 0
    if processes < 1:
        raise RecipeError(f"{NPROC} takes a number of processes, 1 or more; got {value!r}")
    where = launched()
    if where is not None:
        raise RecipeError(f"{NPROC} {processes}: this is already process {where[0]} of {where[1]} started by a launcher "
                          f"(accelerate launch, torchrun); drop {NPROC}, or run the command without the launcher")
    return processes, rest


def launch_command(processes: int, program: list[str]) -> list[str]:
    """The command that runs `program` (`-m simpo VERB ...` or a script and its arguments) as `processes` processes."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no",
        *program,
    ]


def launch_environment(processes: int) -> dict[str, str]:
    """The launcher's environment: on a machine without a GPU, the CPU and cores / N threads per process."""
    import torch

    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    return env


def run_processes(processes: int, program: list[str], **options) -> subprocess.CompletedProcess:
    """Run `program` as `processes` processes under accelerate's launcher and wait for them;
    `options` go to `subprocess.run` (the environment is the launcher's)."""
    return subprocess.run(launch_command(processes, program), env=launch_environment(processes), **options)


def relaunch(verb: str, processes: int, tokens: list[str]) -> int:
    """`simpo VERB TOKENS` as `processes` processes; the launcher's exit status (0 when all succeeded)."""
    return run_processes(processes, ["-m", "simpo", verb, *tokens]).returncode


def prepare_launched_process() -> None:
    """In a process a launcher started as one of several: the CPU when there is no GPU, and a console
    that prints only errors unless this is the main process. Call before the recipe is read."""
    where = launched()
    if where is None:
        return
    import torch

    # DeepSpeed brings its own CPU accelerator and starts gloo itself; accelerate's CPU mode would
    # train the ZeRO-3-partitioned model with DDP instead.
    if not torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    if where[0] != 0:
        for handler in logging.getLogger().handlers:  # the console's; the records still reach other handlers
            handler.setLevel(logging.ERROR)
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
