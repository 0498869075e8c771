"""Stage output that survives `kill -9`: JSONL shards written whole, and the settings that made them.

A stage cuts its input rows into shards of a fixed size (shard k is always rows [k*size, (k+1)*size)
of the same input) and writes each finished shard as `shard-00042.jsonl` by writing a temporary
file, syncing it and renaming it, so a shard on disk is always complete and a killed run loses at
most the shard it was working on. `manifest.json` records the settings and the input's fingerprint;
reopening the folder with other settings fails instead of mixing two runs in one output, once a
shard (or any output) is there: a folder holding only the manifest of a run that failed before its
first shard takes the new settings. `COMPLETE` marks a stage whose every shard is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from .lock import LOCK_FILE

MANIFEST, COMPLETE = "manifest.json", "COMPLETE"
PARTIAL = ".partial"


def fingerprint(rows: Iterable[Any]) -> str:
    """A short content hash of JSON-serialisable rows, in order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + PARTIAL)
    with open(partial, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def write_if_changed(path: Path, text: str) -> None:
    """`write_atomic` unless the file already holds `text` (a rerun leaves finished files untouched)."""
    if not (path.is_file() and path.read_text() == text):
        write_atomic(path, text)


def _holds_output(folder: Path) -> bool:
    """Whether `folder` holds anything a stage wrote besides its manifest (its lock and partial files aside)."""
    return any(entry.name not in (MANIFEST, LOCK_FILE) and not entry.name.endswith(PARTIAL) for entry in folder.iterdir())


def claim(folder: Path, settings: dict[str, Any]) -> None:
    """Record `settings` in `folder`, or fail if the folder holds output made with other settings.

    A manifest with no output beside it (its run failed before writing any) is replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST
    text = json.dumps(settings, indent=2, sort_keys=True, default=str)
    if not (manifest.is_file() and _holds_output(folder)):
        write_if_changed(manifest, text)
        return
    try:
        previous = json.loads(manifest.read_text())
    except (OSError, ValueError) as err:
        raise RecipeError(f"{manifest} cannot be read ({err}), so the settings of the output in {folder} are unknown; "
                          "delete the folder to start over") from None
    if not isinstance(previous, dict):
        raise RecipeError(f"{manifest} is not a settings record (a JSON object); delete the folder {folder} to start over")
    current = json.loads(text)
    changed = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
    if changed:
        details = "; ".join(f"{key}: {previous.get(key)!r} -> {current.get(key)!r}" for key in changed)
        raise RecipeError(
            f"{folder} holds output made with other settings ({details}); "
            "use another output folder, or delete this one to start over"
        )


class ShardedOutput:
    def __init__(self, folder: str | Path, settings: dict[str, Any], total_rows: int, shard_size: int):
        self.folder = Path(folder)
        self.total_rows, self.shard_size = total_rows, shard_size
        self.shard_count = max(1, -(-total_rows // shard_size))
        claim(self.folder, {**settings, "total_rows": total_rows, "shard_size": shard_size})

    def shard_path(self, index: int) -> Path:
        return self.folder / f"shard-{index:05d}.jsonl"

    def shard_rows(self, index: int) -> range:
        """Input row numbers that shard `index` covers."""
        return range(index * self.shard_size, min((index + 1) * self.shard_size, self.total_rows))

    def pending(self) -> list[int]:
        return [i for i in range(self.shard_count) if not self.shard_path(i).is_file()]

    def write(self, index: int, rows: list[dict]) -> None:
        write_atomic(self.shard_path(index), "".join(json.dumps(row) + "\n" for row in rows))

    def mark_complete(self) -> None:
        if self.pending():
            raise RuntimeError(f"{self.folder}: shards {self.pending()} are missing")
        if not is_complete(self.folder):
            mark_complete(self.folder)


def read_jsonl(path: Path) -> Iterator[dict]:
    with open(path) as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def mark_complete(folder: str | Path) -> None:
    write_atomic(Path(folder) / COMPLETE, "")


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / COMPLETE).is_file()


def read_stage(folder: str | Path) -> list[dict]:
    """Every row of a complete stage output, in input order; a clear error if it is not complete."""
    folder = Path(folder)
    if not is_complete(folder):
        raise RecipeError(f"{folder} is not a complete stage output (no {COMPLETE} file): run its stage first")
    return [row for path in sorted(folder.glob("shard-*.jsonl")) for row in read_jsonl(path)]
