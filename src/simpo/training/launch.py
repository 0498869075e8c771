"""Several processes: `simpo train RECIPE.yaml --nproc N` runs the same command as N processes under
`accelerate launch`, and a process that a launcher started is made ready for its part.

`--nproc N` runs `python -m simpo VERB RECIPE.yaml [overrides]` as N processes through accelerate's
launcher, called in this process (torchrun underneath: `--multi_gpu`, `--num_processes N`, a free
`--main_process_port`), and returns 0 or the exit status of the first process that failed. It is
`accelerate launch --multi_gpu --num_processes N -m simpo ...`: accelerate's `MULTI_CPU` mode starts
its processes with `mpirun` only, so on a machine without a GPU the processes are started the
torchrun way too, with `ACCELERATE_USE_CPU=true` and `OMP_NUM_THREADS` = cores / N (unless set).

A process started by a launcher (WORLD_SIZE > 1 in its environment) on a machine without a GPU is
set to the CPU (gloo), as `accelerate launch --cpu` would set it: without that, every process would
train alone as process 0 of 1. Its console prints only errors and no progress bars: the main process
speaks for all, as transformers' `log_level_replica` has it for transformers' own messages.
"""

from __future__ import annotations

import logging
import os
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


def launch_arguments(processes: int, program: list[str]) -> list[str]:
    """`accelerate launch`'s arguments that run `program` (`-m simpo VERB ...`, or a script and its
    arguments) as `processes` processes: torchrun's way, on one machine, a free port; the recipe
    decides the precision."""
    return ["--multi_gpu", "--num_processes", str(processes), "--num_machines", "1", "--main_process_port", "0",
            "--mixed_precision", "no", "--dynamo_backend", "no", *program]


def launch_command(processes: int, program: list[str]) -> list[str]:
    """The same as a command line."""
    return [sys.executable, "-m", "accelerate.commands.launch", *launch_arguments(processes, program)]


def launch_environment(processes: int) -> dict[str, str]:
    """What the launcher adds to the environment: on a machine without a GPU, the CPU and cores / N
    threads per process (unless OMP_NUM_THREADS is set)."""
    import torch

    if torch.cuda.is_available():
        return {}
    return {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // processes))}


def run_processes(processes: int, program: list[str]) -> int:
    """Run `program` as `processes` processes under accelerate's launcher, in this process, and wait
    for them; the exit status: 0, or that of the first process that failed (a `simpo` error: 2 or 3)."""
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils import patch_environment
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(launch_arguments(processes, program))
    with patch_environment(**launch_environment(processes)):
        try:
            accelerate_launch(args)
        except ChildFailedError as failed:  # torchrun stopped the others; its report is logged above
            _, failure = failed.get_first_failure()
            return failure.exitcode if failure.exitcode > 0 else 1
    return 0


def relaunch(verb: str, processes: int, tokens: list[str]) -> int:
    """`simpo VERB TOKENS` as `processes` processes; 0 when all succeeded, else the first failure's exit status."""
    return run_processes(processes, ["-m", "simpo", verb, *tokens])


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
