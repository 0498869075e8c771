"""`simpo sweep RECIPE.yaml --learning_rate 5e-7,8e-7,1e-6 --beta 2.5,10`: every combination trained
on the same pairs, each as `simpo train` trains it, and one table to compare them.

A value list (values joined by commas) sweeps a key that takes a number, a boolean or one of a set
of choices; for text, list and mapping keys a comma is part of the value. Every other `--key value`
is an override, as `simpo train` takes it. Trial k is the recipe with the overrides and its values,
trained into `OUTPUT_DIR/trial-KEY=VALUE-...` (OUTPUT_DIR: the recipe's output_dir; a pipeline
recipe's is RUN_DIR/sweep, its trials training on RUN_DIR/pairs), with `do_eval` on where the recipe
has a test split. The table reads each trial's last evaluation from its `trainer_state.json`; from a
pipeline recipe each trained model also answers the held-out prompts (`stages.evaluate`, into
OUTPUT_DIR/eval). It is printed and written with the command into OUTPUT_DIR/sweep.md, and drawn
into OUTPUT_DIR/sweep.png.

Trials run one after another in this process, the pairs tokenized once for all trials that share
the keys tokenization reads (`stages.train.ENCODING_KEYS`). A reference loss's log-probs are cached
on disk by `training.reference`, so every trial with the same reference and pairs computes them
once. `--processes N` runs each trial as its own `simpo train` process instead, N at a time (its
recipe `OUTPUT_DIR/TRIAL.yaml`, its output `OUTPUT_DIR/TRIAL.log`); each process then tokenizes the
pairs itself. A trial is finished when its folder holds `COMPLETE` (written after its model was
saved whole); the same command skips finished trials and continues or restarts the others as
`simpo train` would, so a killed sweep loses at most the trials it was training.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import logging
import os
import shlex
import subprocess
import sys
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config.pipeline import Pipeline, load_pipeline
from ..config.recipe import ALIASES, PIPELINE_KEYS, TRAINING, Recipe, load_recipe, parse_overrides, read_recipe_file
from ..config.types import convert
from ..data.sources import split_role
from ..errors import DataError, RecipeError, TrainingError, read_json
from ..training.curves import save_figure
from ..training.run_folder import RECIPE_FILE, check_output_dir, holds_run, recipe_text
from ..training.run_info import RUN_INFO
from .lock import folder_lock
from .shards import is_complete, mark_complete, write_atomic

logger = logging.getLogger("simpo")

REPORT, FIGURE = "sweep.md", "sweep.png"
NOT_SWEPT = {  # key: why a value list of it is refused
    "output_dir": "it names the sweep's folder (each trial trains into OUTPUT_DIR/trial-...)",
    "overwrite_output_dir": "it says what every trial does with an earlier run in its folder; give it one value",
    "resume_from_checkpoint": "a trial resumes from its own folder's newest checkpoint",
}
OPTION_ROWS = [  # (option, type, default, help) for `simpo sweep --help`
    ("--KEY v1,v2,...", "values", "-", "Sweep a training key that takes a number, a boolean or a choice: every combination of the swept keys' values is a trial"),
    ("--KEY value", "any", "-", "Any other recipe key, for every trial, as for simpo train (output_dir: the sweep's folder)"),
    ("--processes", "int", "0", "Run each trial as its own simpo train process, N at a time; 0: one after another in this process, the pairs tokenized once"),
    ("--dry-run", "flag", "off", "List the trials and the first one's settings; run nothing"),
]
COLUMNS = (  # (title, key, format): the table's numbers after the trial's swept values
    ("train loss", "train_loss", ".4f"), ("eval loss", "eval_loss", ".4f"), ("reward acc", "eval_rewards/accuracies", ".4f"),
    ("reward margin", "eval_rewards/margins", ".4f"), ("held-out acc", "accuracy", ".4f"), ("answer len", "mean_length_tokens", ".1f"),
    ("repeats", "repetitive", ".0%"), ("train s", "seconds", ".0f"),
)
PANELS = (  # (title, key) drawn in sweep.png when some trial has it
    ("train loss", "train_loss"), ("eval loss", "eval_loss"), ("reward accuracy (eval_rewards/accuracies)", "eval_rewards/accuracies"),
    ("reward margin (eval_rewards/margins)", "eval_rewards/margins"), ("greedy held-out accuracy", "accuracy"),
    ("mean answer length (tokens)", "mean_length_tokens"), ("share of answers that repeat themselves", "repetitive"),
)


@dataclass
class Trial:
    name: str  # its folder's name: trial-KEY=VALUE-...
    values: dict[str, str]  # each swept key's value, as given
    recipe: Recipe  # its training recipe, output_dir its folder

    @property
    def folder(self) -> Path:
        return Path(self.recipe.training.output_dir)


@dataclass
class Sweep:
    command: str  # as typed, for sweep.md
    folder: Path
    axes: dict[str, list[str]]  # swept key -> its values, as given
    overrides: dict[str, object]  # the other overrides of the command line
    trials: list[Trial]
    pipeline: Pipeline | None  # a pipeline recipe's settings: its held-out prompts and rewards
    processes: int  # 0: every trial in this process


def _sweepable(kind) -> bool:
    """A number, a boolean or an enumeration of choices (alone or in a union)."""
    arms = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    return any(arm in (int, float, bool) or isinstance(arm, type) and issubclass(arm, enum.Enum) for arm in arms)


def _axis(key: str, text: str) -> list[str] | None:
    """The values a `--key v1,v2` sweeps, as given, each checked against the key's type; None when the
    comma is part of one value (a text, list or mapping key)."""
    name = ALIASES.get(key, key)
    if name in NOT_SWEPT or "." in key:
        why = NOT_SWEPT.get(name, "the sweep trains on the pairs the pipeline made; give it one value")
        raise RecipeError(f"--{key} {text}: {key} cannot be swept: {why}")
    if name in TRAINING.known_keys and not _sweepable(TRAINING.field_types[name]):
        return None
    values = [value.strip() for value in text.split(",")]
    if not all(values):
        raise RecipeError(f"--{key} {text!r} has an empty value; give values joined by commas, e.g. --{key} 1,2")
    typed = [next(iter(TRAINING.normalise(parse_overrides([f"--{key}={value}"]), f"--{key}").values())) for value in values]
    twice = [value for value, same in zip(values, typed) if typed.count(same) > 1]
    if twice:
        raise RecipeError(f"--{key} {text}: {' and '.join(twice)} are the same value of {key}; give each value once")
    return values


def _load(path: str, overrides: dict, pipeline: bool) -> Recipe | Pipeline:
    """The recipe file with `overrides`, read as `simpo train` (or `simpo pipeline`) reads its command line."""
    tokens = [f"--{key}={recipe_text(value)}" for key, value in overrides.items()]
    return load_pipeline(path, tokens) if pipeline else load_recipe(path, tokens)


def parse_sweep(tokens: list[str]) -> Sweep:
    """`RECIPE.yaml [--key v1,v2 ...] [--key value ...] [--processes N]`, every trial's recipe built and checked."""
    if not tokens or tokens[0].startswith("--"):
        raise RecipeError("simpo sweep needs a recipe file: simpo sweep RECIPE.yaml --learning_rate 5e-7,1e-6 [--key value ...]")
    path, options = tokens[0], parse_overrides(tokens[1:])
    processes = convert(options.pop("processes", 0), int, "--processes")
    if processes < 0:
        raise RecipeError(f"--processes takes a number of processes at a time, 1 or more (0: all trials in this process); got {processes}")
    axes, overrides = {}, {}
    for key, value in options.items():
        values = _axis(key, value) if isinstance(value, str) and "," in value else None
        (axes if values else overrides)[key] = values or value
    if not axes:
        raise RecipeError("simpo sweep has nothing to sweep (zero combinations): give a key two or more values joined by commas, "
                          "e.g. --learning_rate 5e-7,1e-6 (one setting is a simpo train run)")
    is_pipeline = any(key in PIPELINE_KEYS for key in read_recipe_file(path))
    base = _load(path, overrides, is_pipeline)
    pipeline = base if is_pipeline else None
    if pipeline is not None:
        _check_pipeline(pipeline)
    if pipeline is None:
        folder = Path(base.training.output_dir)
    else:  # a pipeline recipe's output_dir is its own model's folder
        folder = Path(str(overrides["output_dir"])) if "output_dir" in overrides else pipeline.run_dir / "sweep"
    if holds_run(folder):
        raise RecipeError(f"output_dir {folder} holds a training run; give the sweep a folder of its own (--output_dir)")
    recipe = pipeline.train if pipeline is not None else base
    fixed = {key: value for key, value in overrides.items() if key != "output_dir"}
    if "do_eval" not in fixed and "test" in {split_role(split) for split in recipe.data.dataset_splits}:
        fixed["do_eval"] = True  # the table compares the trials on the held-out pairs
    trials = []
    for combination in itertools.product(*axes.values()):
        values = dict(zip(axes, combination))
        name = "trial-" + "-".join(f"{key}={value}" for key, value in values.items())
        trial = _load(path, {**fixed, **values, "output_dir": str(folder / name)}, is_pipeline)
        trials.append(Trial(name, values, trial.train if is_pipeline else trial))
    command = shlex.join(["simpo", "sweep", *tokens])
    return Sweep(command, folder, axes, overrides, trials, pipeline, processes)


def _check_pipeline(pipeline: Pipeline) -> None:
    """The pipeline has made its pairs, and its held-out prompts can be scored."""
    pipeline.validate()
    if pipeline.rounds > 1:
        raise RecipeError(f"simpo sweep trains on one set of pairs, and rounds: {pipeline.rounds} makes one per round; "
                          "sweep a one-round pipeline recipe, or a training recipe on one round's pairs")
    pairs = pipeline.binarize.output
    if not is_complete(pairs):
        raise RecipeError(f"simpo sweep trains on the pipeline's pairs, and {pairs} is not complete: run simpo pipeline (or "
                          "simpo generate, annotate and binarize) with this recipe first")


def describe(sweep: Sweep) -> str:
    """What `--dry-run` prints: the trials, their folders and whether each is finished, then the first trial's settings."""
    lines = [f"simpo sweep: {len(sweep.trials)} trials into {sweep.folder}; "
             + "; ".join(f"{key}: {', '.join(values)}" for key, values in sweep.axes.items())]
    lines += [f"  {trial.name}{'  (finished)' if is_complete(trial.folder) else ''}" for trial in sweep.trials]
    lines += ["each as `simpo train` would train it " + ("in this process" if not sweep.processes else
              f"in its own process, {sweep.processes} at a time") + "; the first trial's settings (the others differ "
              "only in the swept keys and output_dir):", sweep.trials[0].recipe.to_json()]
    return "\n".join(lines)


def run_sweep(sweep: Sweep) -> list[dict]:
    """Train every unfinished trial, evaluate each, print the table, write sweep.md and sweep.png; one row per trial."""
    with folder_lock(sweep.folder):
        for trial in sweep.trials:  # a trial folder holding a run of another recipe stops the sweep before any training
            check_output_dir(trial.folder, trial.recipe.raw, trial.recipe.training.overwrite_output_dir)
        pending = [trial for trial in sweep.trials if not is_complete(trial.folder) or trial.recipe.training.overwrite_output_dir]
        logger.warning("sweep: %d of %d trials finished already, %d to train", len(sweep.trials) - len(pending), len(sweep.trials), len(pending))
        start = time.perf_counter()
        (_train_in_processes if sweep.processes else _train_here)(pending, sweep)
        rows = [{**_results(trial), **(_held_out(trial, sweep.pipeline, sweep.folder) if sweep.pipeline else {})}
                for trial in sweep.trials]
        table = sweep_table(rows, list(sweep.axes))
        _write_report(sweep, table, time.perf_counter() - start, len(pending))
        write_figure(rows, sweep.axes, sweep.folder / FIGURE)
    print(f"{table}\n\n{sweep.folder / REPORT}, {sweep.folder / FIGURE}")
    return rows


def _train_here(trials: list[Trial], sweep: Sweep) -> None:
    """Each trial in this process, the pairs tokenized once for the trials whose tokenization is the same."""
    from .train import ENCODING_KEYS, encode_pairs, run_training

    encoded: dict[str, tuple] = {}
    for number, trial in enumerate(trials, start=1):
        recipe = trial.recipe
        key = json.dumps([dataclasses.asdict(recipe.model), dataclasses.asdict(recipe.data),
                          [getattr(recipe.training, name) for name in ENCODING_KEYS]], default=str, sort_keys=True)
        if key not in encoded:
            encoded[key] = encode_pairs(recipe)
        logger.warning("sweep: training %s (%d of %d)", trial.name, number, len(trials))
        run_training(recipe, encoded[key])
        mark_complete(trial.folder)


def _train_in_processes(trials: list[Trial], sweep: Sweep) -> None:
    """Each trial as `simpo train OUTPUT_DIR/TRIAL.yaml`, `sweep.processes` at a time, its output in
    OUTPUT_DIR/TRIAL.log; after a failure no trial starts, and the sweep stops naming it once the running ones end."""
    from ..training.launch import launch_environment

    environment = {**os.environ, **launch_environment(sweep.processes)}  # the cores shared among the processes
    waiting, running, failed = list(trials), [], []
    while running or (waiting and not failed):
        while waiting and not failed and len(running) < sweep.processes:
            trial = waiting.pop(0)
            recipe_file = sweep.folder / f"{trial.name}.yaml"
            write_atomic(recipe_file, yaml.safe_dump(trial.recipe.raw, sort_keys=False))
            with open(sweep.folder / f"{trial.name}.log", "w") as log:
                running.append((trial, subprocess.Popen([sys.executable, "-m", "simpo", "train", str(recipe_file)],
                                                        stdout=log, stderr=subprocess.STDOUT, env=environment)))
            logger.warning("sweep: training %s in process %d", trial.name, running[-1][1].pid)
        time.sleep(0.2)
        for trial, process in [entry for entry in running if entry[1].poll() is not None]:
            running.remove((trial, process))
            if process.returncode == 0:
                mark_complete(trial.folder)
            else:
                failed.append((trial, process.returncode))
    if failed:
        trial, status = failed[0]
        log = sweep.folder / f"{trial.name}.log"
        last = next((line for line in reversed(log.read_text(errors="replace").splitlines()) if line.strip()), "")
        raise TrainingError(f"trial {trial.name} stopped with exit status {status} ({last.strip()}); its output: {log}; "
                            "the same command continues the sweep")


def _results(trial: Trial) -> dict:
    """A finished trial's numbers: the last training and evaluation entries of its trainer_state.json,
    and its seconds (run_info.json)."""
    history = read_json(trial.folder / "trainer_state.json", dict, DataError, "a trainer state of transformers").get("log_history", [])
    evaluation = next((entry for entry in reversed(history) if "eval_loss" in entry), {})
    training = next((entry for entry in reversed(history) if "train_loss" in entry), {})
    info = read_json(trial.folder / RUN_INFO, dict, DataError, "simpo train's record of its run")
    return {"trial": trial.name, **trial.values, "train_loss": training.get("train_loss"), "seconds": info.get("seconds"),
            **{key: evaluation.get(key) for key in ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins")}}


def _held_out(trial: Trial, pipeline: Pipeline, folder: Path) -> dict:
    """The trained model's greedy answers to the pipeline's held-out prompts (`stages.evaluate`, into
    OUTPUT_DIR/eval/TRIAL.json, read back when there): accuracy, mean length, the share that repeat themselves."""
    from .evaluate import run_evaluate

    settings = dataclasses.replace(pipeline.evaluate, output=str(folder / "eval"))
    trained = dataclasses.replace(trial.recipe.model, model_name_or_path=str(trial.folder))
    summary = run_evaluate(trained, settings, pipeline.annotate.rewards, trial.name)
    return {key: summary.get(key) for key in ("accuracy", "mean_length_tokens", "repetitive")}


def _cell(row: dict, key: str, form: str) -> str:
    value = row.get(key)
    return "-" if value is None else format(value, form)


def sweep_table(rows: list[dict], keys: list[str]) -> str:
    """A markdown table: one line per trial, its swept values, then the numbers some trial has."""
    columns = [column for column in COLUMNS if any(row.get(column[1]) is not None for row in rows)]
    lines = ["| " + " | ".join(["trial", *keys, *(title for title, _, _ in columns)]) + " |",
             "|" + "---|" * (1 + len(keys)) + "---:|" * len(columns)]
    for row in rows:
        cells = [row["trial"], *(row[key] for key in keys), *(_cell(row, key, form) for _, key, form in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_report(sweep: Sweep, table: str, seconds: float, trained: int) -> None:
    fixed = ", ".join(f"{key}: {recipe_text(value)}" for key, value in sweep.overrides.items() if key != "output_dir") or "none"
    swept = "; ".join(f"{key}: {', '.join(values)}" for key, values in sweep.axes.items())
    held_out = (f" Held-out accuracy, answer length and repeats: greedy answers to {sweep.pipeline.evaluate.prompts} "
                f"[{sweep.pipeline.evaluate.split}] (OUTPUT_DIR/eval/TRIAL.json).") if sweep.pipeline is not None else ""
    text = "\n".join([
        f"# simpo sweep: {sweep.folder.name}", "", f"    {sweep.command}", "",
        f"Swept: {swept} ({len(sweep.trials)} trials). Other overrides: {fixed}. Every other setting is the recipe's; "
        f"each trial's is in its folder's {RECIPE_FILE}.", "",
        table, "",
        "Losses and rewards: each trial's last evaluation on the recipe's test split (after training), its train loss the "
        f"mean over training; train s: the seconds its {RUN_INFO} records (trials in one process share the tokenizing, "
        f"which is not in them).{held_out} This command trained {trained} trials in "
        f"{seconds:.0f} s.", "", f"![the trials]({FIGURE})", "",
    ])
    write_atomic(sweep.folder / REPORT, text)


def write_figure(rows: list[dict], axes: dict[str, list[str]], target: Path) -> Path:
    """`sweep.png`: each number against the first swept key's values, one line per combination of the
    others; written whole (temporary file, rename)."""
    from matplotlib.figure import Figure

    panels = [(title, key) for title, key in PANELS if any(row.get(key) is not None for row in rows)]
    first, *others = axes
    columns = 2 if len(panels) == 4 else min(len(panels), 3)
    height = -(-len(panels) // columns)  # panel rows
    figure = Figure(figsize=(13, 3.8 * height), layout="constrained")
    figure.suptitle(f"{target.parent.name}: {len(rows)} trials")
    grid = figure.subplots(height, columns, squeeze=False).ravel()
    for ax in grid[len(panels):]:
        ax.set_visible(False)
    lines: dict[str, list[dict]] = {}
    for row in rows:
        lines.setdefault(", ".join(f"{key}={row[key]}" for key in others), []).append(row)
    for ax, (title, key) in zip(grid, panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(first)
        ax.set_xticks(range(len(axes[first])), axes[first])
        ax.grid(alpha=0.3)
        for label, members in lines.items():
            points = [(axes[first].index(row[first]), row[key]) for row in members if row.get(key) is not None]
            if points:
                ax.plot(*zip(*points), "o-", label=label or None)
        if others:
            ax.legend(fontsize=8)
    return save_figure(figure, target)
