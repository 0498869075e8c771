"""Stage output that survives `kill -9`: JSONL shards written whole, and the settings that made them.

A stage cuts its input rows into shards of a fixed size (shard k is always rows [k*size, (k+1)*size)
of the same input) and writes each finished shard as `shard-00042.jsonl` by writing a temporary
file, syncing it and renaming it, so a shard on disk is always complete and a killed run loses at
most the shard it was working on. `manifest.json` records the settings and the input's fingerprint;
reopening the folder with other settings fails instead of mixing two runs in one output, once a
shard (or any output) is there: a folder holding only the manifest of a run that failed before its
first shard takes the new settings. `COMPLETE` marks a stage whose every shard is written, and
records each shard's size and SHA-256.

Nothing read back is trusted: a shard is written again when it does not hold its rows (cut short,
emptied, edited), and `read_stage` checks every shard against `COMPLETE` (a folder written before
`COMPLETE` held sizes: each line read as JSON, the row count against the manifest's), refusing a
damaged one in one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from .lock import LOCK_FILE

logger = logging.getLogger("simpo")

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
    """`path` holds `text` whole, or is as it was: written beside it, synced and renamed (the partial
    file removed when the write fails, a full disk included)."""
    partial = path.with_name(path.name + PARTIAL)
    try:
        with open(partial, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_if_changed(path: Path, text: str) -> None:
    """`write_atomic` unless the file already holds `text` (a rerun leaves finished files untouched)."""
    if not (path.is_file() and path.read_bytes() == text.encode()):
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


def _file_record(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


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

    def damage(self, index: int) -> str | None:
        """What is wrong with shard `index` on disk (missing: None, as pending() counts it), or None."""
        path = self.shard_path(index)
        if not path.is_file():
            return None
        return shard_damage(path, len(self.shard_rows(index)))

    def pending(self) -> list[int]:
        """The shards to write: those missing, and those on disk that do not hold their rows (written again)."""
        pending = []
        for index in range(self.shard_count):
            if not self.shard_path(index).is_file():
                pending.append(index)
            elif (damage := self.damage(index)) is not None:
                logger.warning("%s %s; writing it again", self.shard_path(index), damage)
                pending.append(index)
        return pending

    def write(self, index: int, rows: list[dict]) -> None:
        write_atomic(self.shard_path(index), "".join(json.dumps(row) + "\n" for row in rows))

    def mark_complete(self) -> None:
        """COMPLETE, recording each shard's size and SHA-256 (rewritten when a shard was written again)."""
        if self.pending():
            raise RuntimeError(f"{self.folder}: shards {self.pending()} are missing")
        mark_complete(self.folder, [self.shard_path(index).name for index in range(self.shard_count)])


def shard_damage(path: Path, rows: int) -> str | None:
    """What is wrong with a JSONL shard that should hold `rows` rows, one JSON object a line, or None."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if data and not data.endswith(b"\n"):
        return "is cut short (its last line has no end)"
    lines = data.splitlines()
    if len(lines) != rows:
        return f"holds {len(lines)} rows, not its {rows}"
    for number, line in enumerate(lines, start=1):
        try:
            if not isinstance(json.loads(line), dict):
                return f"line {number} is not a JSON object"
        except ValueError:
            return f"line {number} is not valid JSON"
    return None


def read_jsonl(path: Path) -> Iterator[dict]:
    """The rows of a JSONL file a stage wrote; a damaged line is a one-line RecipeError naming the file."""
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                if not isinstance(row, dict) or not line.endswith("\n"):
                    raise RecipeError(f"{path}, line {number}: not a whole JSON row, so the file is damaged (cut short or "
                                      "edited); delete it and run the stage that wrote it again")
                yield row
    except UnicodeDecodeError:
        raise RecipeError(f"{path} is not UTF-8 text, so the file is damaged; delete it and run the stage that wrote it again") from None


def mark_complete(folder: str | Path, files: Iterable[str] = ()) -> None:
    """COMPLETE in `folder`, recording the size and SHA-256 of each of `files` (names in the folder)."""
    folder = Path(folder)
    record = {"files": {name: _file_record(folder / name) for name in files}}
    write_if_changed(folder / COMPLETE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / COMPLETE).is_file()


def complete_record(folder: str | Path) -> dict[str, dict] | None:
    """{file name: {"bytes", "sha256"}} that COMPLETE records; None for a COMPLETE written before it
    recorded files (empty). A RecipeError when COMPLETE is not such a record."""
    path = Path(folder) / COMPLETE
    text = path.read_text(errors="replace")
    if not text.strip():
        return None
    try:
        files = json.loads(text)["files"]
        if not (isinstance(files, dict) and all(isinstance(v, dict) and {"bytes", "sha256"} <= set(v) for v in files.values())):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise RecipeError(f"{path} is damaged (not the record its stage writes); delete it and run the stage again") from None
    return files


def damaged_files(folder: str | Path) -> list[str]:
    """Each file COMPLETE records that is missing or differs from what the stage wrote, said in words."""
    folder = Path(folder)
    found = []
    for name, expected in (complete_record(folder) or {}).items():
        path = folder / name
        if not path.is_file():
            found.append(f"{path} is missing")
            continue
        actual = _file_record(path)
        if actual != expected:
            found.append(f"{path} is not the file its stage wrote ({actual['bytes']} bytes, {expected['bytes']} when the stage finished)")
    return found


def read_stage(folder: str | Path) -> list[dict]:
    """Every row of a complete stage output, in input order; a clear error if it is not complete or
    a shard is not what the stage wrote."""
    folder = Path(folder)
    if not is_complete(folder):
        raise RecipeError(f"{folder} is not a complete stage output (no {COMPLETE} file): run its stage first")
    damaged = damaged_files(folder)
    if damaged:
        raise RecipeError(f"{damaged[0]}: delete it and run its stage again, which writes it anew")
    rows = [row for path in sorted(folder.glob("shard-*.jsonl")) for row in read_jsonl(path)]
    try:  # what a COMPLETE written before it recorded sizes leaves to check: the row count
        total = json.loads((folder / MANIFEST).read_text()).get("total_rows")
    except (OSError, ValueError, AttributeError):
        total = None
    if isinstance(total, int) and total != len(rows):
        raise RecipeError(f"{folder} holds {len(rows)} rows, not the {total} its stage wrote (a shard is cut short or "
                          "missing); delete its shard files and run its stage again")
    return rows
