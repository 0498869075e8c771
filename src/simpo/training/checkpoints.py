"""Where a run continues from: the checkpoint `resume_from_checkpoint` names, or else the newest
complete checkpoint in `output_dir`.

A checkpoint is complete when its `trainer_state.json` (which `Trainer` writes after the weights,
optimizer and scheduler) reads as JSON and no file in it is empty. A run killed while writing one
leaves a `checkpoint-N` folder without them; it is skipped with a warning instead of being picked and
failing every rerun.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

logger = logging.getLogger("simpo")

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def is_complete_checkpoint(folder: Path) -> bool:
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return all(path.stat().st_size > 0 for path in folder.iterdir() if path.is_file())


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
