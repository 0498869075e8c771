"""An `output_dir` that already holds a run: the same recipe continues it, another recipe is refused
before anything is written, and `overwrite_output_dir: true` moves the old run aside and starts over.

A folder holds a run when it has a `checkpoint-N` folder or a finished run's `trainer_state.json`;
its `recipe.yaml`, written when that run started, is the recipe it was made with. Two recipes make
the same run when every key that changes the trained weights has the same value in both, a key left
out counting as its default (a loss key: its loss's default). The keys in `MAY_DIFFER` change only
what is logged, saved or evaluated, where the run writes and how it resumes, or how fast and in how
much memory the same numbers are computed; they may differ. Every other key (the model, the data,
the loss, the optimizer and its schedule, the steps, the batch sizes, precision, seeds, sharding)
may not: checkpoints of two recipes are never mixed in one folder. `simpo sft` compares its recipes
the same way (with the SFT recipe's defaults). overwrite_output_dir never moves the current folder
or one holding it, nor a folder holding files that no run writes (`RUN_FILES`): the user's recipe,
data or notes stay where they are.

The trained model is saved into the folder under `INCOMPLETE` (`saving_model`): the marker is written
before the first file of the final save and removed after the last, so a save cut short (a full
disk, a kill) leaves a folder that every command taking a model refuses in one line
(`check_whole`); a folder without the marker (one simpo finished, or any model folder made
elsewhere) loads as it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ..config.recipe import TRAINING
from ..errors import RecipeError
from .checkpoints import checkpoint_folders
from .losses import LOSSES

logger = logging.getLogger("simpo")

RECIPE_FILE = "recipe.yaml"
INCOMPLETE = "INCOMPLETE"  # in a model folder while simpo saves the model into it

MAY_DIFFER = frozenset({
    # where the run writes, and how it starts or resumes
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "ignore_data_skip", "restore_callback_states_from_checkpoint",
    # what is logged and reported
    "logging_strategy", "logging_steps", "logging_first_step", "logging_nan_inf_filter", "log_on_each_node", "log_level",
    "log_level_replica", "disable_tqdm", "report_to", "run_name", "project", "trackio_space_id", "trackio_bucket_id",
    "trackio_static_space_id", "include_num_input_tokens_seen", "skip_memory_metrics", "debug",
    # what is saved and published
    "save_strategy", "save_steps", "save_total_limit", "save_on_each_node", "save_only_model", "enable_jit_checkpoint",
    "push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push", "hub_revision",
    # evaluation, which does not change the weights (load_best_model_at_end does, and is compared)
    "do_train", "do_eval", "do_predict", "eval_strategy", "eval_steps", "eval_delay", "eval_on_start",
    "per_device_eval_batch_size", "eval_accumulation_steps", "eval_do_concat_batches", "eval_use_gather_object",
    "prediction_loss_only", "include_for_metrics", "batch_eval_metrics", "bf16_full_eval", "fp16_full_eval",
    # how fast and in how much memory: exact layouts, recomputation, kernels, workers, the device
    "logps_chunk_size", "padding_free", "share_prompt", "activation_checkpointing", "activation_checkpointing_kwargs",
    "gradient_checkpointing", "gradient_checkpointing_kwargs", "attn_implementation", "torch_compile",
    "torch_compile_backend", "torch_compile_mode", "torch_empty_cache_steps", "dataloader_num_workers",
    "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
    "dataloader_multiprocessing_context", "preprocessing_num_workers", "ddp_timeout", "use_cpu",
    # what a non-finite step does (a run stopped by one may go on skipping them)
    "on_nonfinite",
})


def holds_run(folder: Path) -> bool:
    return bool(checkpoint_folders(folder)) or (Path(folder) / "trainer_state.json").is_file()


def _defaults(kind=TRAINING) -> dict[str, Any]:
    """Every key's default in a recipe of `kind` (a loss key's is its loss's, below)."""
    defaults = {}
    for cls in kind.sections.values():
        for field in dataclasses.fields(cls):
            if field.default is not dataclasses.MISSING:
                defaults[field.name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                defaults[field.name] = field.default_factory()
    return defaults


def _value(key: str, values: dict[str, Any], defaults: dict[str, Any]) -> Any:
    """The value a run of the recipe `values` uses for `key`."""
    if key in values:
        return values[key]
    loss = LOSSES.get(values.get("loss_type", "simpo"))
    if loss is not None and key in loss.keys:
        return loss.keys[key]
    return defaults.get(key)


def recipe_differences(old: dict[str, Any], new: dict[str, Any], kind=TRAINING) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) of each key that changes the result and differs, in the new recipe's
    order; `kind`: the kind of recipe both are (config.recipe.TRAINING, config.sft.SFT), for its defaults."""
    defaults = _defaults(kind)
    keys = [key for key in new if key not in MAY_DIFFER] + [key for key in old if key not in new and key not in MAY_DIFFER]
    found = []
    for key in keys:
        before, after = _value(key, old, defaults), _value(key, new, defaults)
        if before != after:
            found.append((key, before, after))
    return found


def recipe_text(value: Any) -> str:
    """A value as a recipe writes it: 0.001, true, null, {data/pairs: 1.0}."""
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip()
    return text.removesuffix("...").strip()


def aside_folder(folder) -> Path:
    """Where `overwrite_output_dir` moves a run: the first free `NAME.previous-N` beside the folder."""
    folder = Path(os.path.abspath(folder))
    number = 1
    while (folder.parent / f"{folder.name}.previous-{number}").exists():
        number += 1
    return folder.parent / f"{folder.name}.previous-{number}"


def check_output_dir(output_dir, recipe_values: dict[str, Any], overwrite: bool, kind=TRAINING) -> None:
    """A `RecipeError` when `output_dir` holds a run made with another recipe (or one whose recipe
    is unknown) and `overwrite` is not set. Reads only: call it before anything is written.

    `kind`: the recipe's kind; an SFT run (config.sft.SFT) takes no overwrite_output_dir (the
    official SFT recipes set it, without effect), so the way out it is told is another folder."""
    folder = Path(output_dir)
    if not holds_run(folder):
        return
    if overwrite:
        check_movable(folder)
        return
    if kind is TRAINING:
        how = (f"use another output_dir, or set overwrite_output_dir: true to start over "
               f"(the old run is then moved to {aside_folder(folder)})")
    else:
        how = "use another output_dir, or delete this one (or move it away) to start over"
    try:
        old = yaml.safe_load((folder / RECIPE_FILE).read_text())
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8 text
        old = None
    if not isinstance(old, dict):
        raise RecipeError(f"output_dir {folder} holds a run without a readable {RECIPE_FILE}, so whether it was made "
                          f"with this recipe cannot be told; {how}")
    differences = recipe_differences(old, recipe_values, kind)
    if differences:
        listed = ", ".join(f"{key}: {recipe_text(before)} -> {recipe_text(after)}" for key, before, after in differences)
        raise RecipeError(f"output_dir {folder} holds a run made with another recipe ({listed}); {how}")


# What a run leaves in its output_dir (transformers' and peft's saves, simpo's records, the folders
# simpo's commands write there by default): overwrite_output_dir moves a folder that holds only these.
RUN_FILES = (
    "checkpoint-*", "runs", RECIPE_FILE, INCOMPLETE, "COMPLETE", ".simpo-lock", "*.partial", "trainer_state.json",
    "training_args.bin", "all_results.json", "train_results.json", "eval_results.json", "run_info.json",
    "training_curves.png", "config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
    "pytorch_model*.bin", "pytorch_model*.bin.index.json", "pytorch_model_fsdp*", "adapter_config.json",
    "adapter_model.bin", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
    "chat_template.jinja", "chat_template.json", "merged", "benchmarks",
)


def _foreign(folder: Path) -> list[str]:
    """The entries of `folder` that a run does not write (a README.md only when simpo card or a library wrote it)."""
    from ..models.card import replaceable

    found = []
    for entry in sorted(folder.iterdir()):
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in RUN_FILES):
            continue
        if entry.name == "README.md" and entry.is_file():
            with contextlib.suppress(OSError):
                if replaceable(entry.read_text(errors="replace")):
                    continue
        found.append(entry.name + ("/" if entry.is_dir() else ""))
    return found


def check_movable(output_dir) -> None:
    """A `RecipeError` unless overwrite_output_dir may move what `output_dir` holds aside: never the
    current folder or one holding it, never a folder holding files a run does not write."""
    folder = Path(output_dir)
    resolved, here = folder.resolve(), Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        where = "the current folder" if resolved == here else f"a folder holding the current one ({here})"
        raise RecipeError(f"output_dir {output_dir} is {where}: overwrite_output_dir would move it aside with everything "
                          "in it; give the run a folder of its own (output_dir: NAME)")
    foreign = _foreign(folder)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise RecipeError(f"output_dir {folder} holds files that no training run writes ({shown}), which "
                          "overwrite_output_dir would move aside with the run; move them out, or give the run a folder "
                          "of its own")


def move_aside(output_dir, keep: tuple[str, ...] = ()) -> Path | None:
    """Move everything in `output_dir` but `keep` into `aside_folder(output_dir)` when it holds a run
    (`check_movable` first); the folder it went to (None: no run, nothing moved)."""
    folder = Path(output_dir)
    if not holds_run(folder):
        return None
    check_movable(folder)
    aside = aside_folder(folder)
    aside.mkdir()
    for entry in sorted(folder.iterdir()):
        if entry.name not in keep:
            entry.rename(aside / entry.name)
    logger.warning("overwrite_output_dir: moved the previous run in %s to %s (delete it to free its space)", folder, aside)
    return aside


@contextlib.contextmanager
def saving_model(output_dir, writer: bool = True) -> Iterator[None]:
    """The final save of a run into `output_dir`, marked `INCOMPLETE` until every file is written
    (`writer`: this process writes the marker; the other processes of a distributed run do not)."""
    marker = Path(output_dir) / INCOMPLETE
    if writer:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with open(marker, "w") as out:
            out.write("simpo began saving the model into this folder and has not finished; until this file is gone, "
                      "the folder is not a whole model\n")
            out.flush()
            os.fsync(out.fileno())
    yield
    if writer:
        marker.unlink(missing_ok=True)


def check_whole(folder) -> None:
    """A `RecipeError` when `folder` is a model folder whose save simpo began and never finished."""
    path = Path(folder).expanduser()
    if (path / INCOMPLETE).is_file():
        raise RecipeError(f"{path} is not a whole model: simpo began saving it and never finished (its {INCOMPLETE} file "
                          "is there: a full disk or a kill during the save); run the command that made it again to save "
                          "it whole, or use another model")
