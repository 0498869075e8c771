"""Where a run continues from: the checkpoint `resume_from_checkpoint` names, or else the newest
complete checkpoint in `output_dir`.

A checkpoint is complete when its `trainer_state.json` (which `Trainer` writes after the weights,
optimizer and scheduler) reads as a trainer state, it holds weights, and no file in it is empty. A
run killed while writing one leaves a `checkpoint-N` folder without them; it is skipped with a
warning instead of being picked and failing every rerun. A checkpoint the recipe names
(`resume_from_checkpoint: PATH`) that is not complete is refused when the recipe is read, naming
what is wrong (`check_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

from ..errors import RecipeError, read_json

logger = logging.getLogger("simpo")

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


STATE = "trainer_state.json"
WEIGHTS = ("model", "pytorch_model", "adapter_model", "global_step")  # how the names of a checkpoint's weights begin


def check_checkpoint(folder) -> None:
    """A `RecipeError` naming the file when `folder` is not a checkpoint `Trainer` can resume from:
    its `trainer_state.json` missing, not JSON, or not a trainer state; no weights; an empty file."""
    from transformers import TrainerState

    folder = Path(folder)
    path = folder / STATE
    if not path.is_file():
        raise RecipeError(f"{folder} is not a checkpoint (no {STATE}); use true (the newest in output_dir) or a checkpoint-N folder")
    state = read_json(path, dict, RecipeError, "a trainer state of transformers")
    known = {field.name for field in dataclasses.fields(TrainerState)}
    unknown = sorted(set(state) - known)
    if unknown:
        raise RecipeError(f"{path}: not a trainer state (unknown keys {', '.join(map(repr, unknown[:5]))}); the checkpoint is damaged: "
                          "resume from another, or start over")
    step, history = state.get("global_step", 0), state.get("log_history")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0 or not (
            history is None or isinstance(history, list) and all(isinstance(entry, dict) for entry in history)):
        raise RecipeError(f"{path}: global_step or log_history is not what transformers writes; the checkpoint is damaged: "
                          "resume from another, or start over")
    if not any(entry.name.startswith(WEIGHTS) for entry in folder.iterdir()):
        raise RecipeError(f"{folder} holds no model weights, so it is not a checkpoint to resume from; resume from another, or start over")
    empty = [path.name for path in folder.iterdir() if path.is_file() and path.stat().st_size == 0]
    if empty:
        raise RecipeError(f"{folder / empty[0]} is empty: the checkpoint was cut off while written; resume from another, or start over")


def is_complete_checkpoint(folder: Path) -> bool:
    try:
        check_checkpoint(folder)
    except (RecipeError, OSError):
        return False
    return True


def checkpoint_folders(output_dir) -> list[Path]:
    """The `checkpoint-N` folders in `output_dir`, newest (highest N) first."""
    output_dir = Path(output_dir)
    found = [path for path in output_dir.iterdir() if path.is_dir() and _CHECKPOINT.fullmatch(path.name)] if output_dir.is_dir() else []
    return sorted(found, key=lambda path: int(_CHECKPOINT.fullmatch(path.name).group(1)), reverse=True)


def newest_complete_checkpoint(output_dir, warn: bool = False) -> Path | None:
    """The newest complete `checkpoint-N` in `output_dir` (None: none); `warn`: log each incomplete one passed over."""
    for folder in checkpoint_folders(output_dir):
        if is_complete_checkpoint(folder):
            return folder
        if warn:
            logger.warning("skipping %s: an incomplete checkpoint (a run stopped while writing it)", folder)
    return None


def resume_point(args) -> str | None:
    """The checkpoint to resume from (None: start over): an explicit `resume_from_checkpoint`, else the
    newest complete `checkpoint-N` in `output_dir` (`resume_from_checkpoint: false` starts over)."""
    wanted = args.resume_from_checkpoint
    if isinstance(wanted, str) and wanted.lower() in ("false", "no", "none"):
        return None
    if wanted not in (None, "true", "True"):
        return wanted
    folder = newest_complete_checkpoint(args.output_dir, warn=True)
    if folder is not None:
        logger.warning("resuming from %s (set resume_from_checkpoint: false to start over)", folder)
        return str(folder)
    return None
