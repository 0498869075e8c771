"""One writer per output folder: `folder_lock(folder)` holds an exclusive lock on `FOLDER/.simpo-lock`.

The lock is `fcntl.flock` on that file, taken without waiting: a second process on the same folder
stops at once with a `RecipeError` naming the holder (pid, host, command line, since when) that the
holder wrote into the file. The kernel drops the lock when its holder exits, `kill -9` included, so a
lock file left by a killed process is stale and never blocks: the next holder takes it and rewrites it.

On release the lock file is removed, so a finished folder holds only what its stage wrote, and so is
a folder the lock created that nothing else was written into (the parents it created too): a run that
fails before writing leaves nothing behind. Since the file can vanish between a process opening it
and locking it, a lock counts only when the path still names the locked file; otherwise it is taken
again.

The same process may lock a folder it already holds (the pipeline holds RUN_DIR while a stage locks
its own folder, which may be the same one): the inner use is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import RecipeError

LOCK_FILE = ".simpo-lock"

_held: dict[Path, dict] = {}  # folders this process holds -> their holder record


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.argv),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def _in_use(folder: Path, fd: int) -> RecipeError:
    try:
        holder = json.loads(os.pread(fd, 65536, 0))
        who = f"pid {holder['pid']} on {holder['host']} ({holder['command']}), since {holder['since']}"
    except (ValueError, KeyError, TypeError):  # the holder has not written its record yet
        who = "another process"
    return RecipeError(f"{folder} is being written by {who}: wait for it to finish, or use another folder")


def _open_locked(folder: Path) -> int:
    """A descriptor of FOLDER/LOCK_FILE holding its exclusive lock, the folder made first."""
    path = folder / LOCK_FILE
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the previous holder removed the folder it had made: make it again
            continue
        except OSError as err:
            raise RecipeError(f"{folder} cannot be used as an output folder ({err.strerror}): give a folder path") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _in_use(folder, fd)
            os.close(fd)
            raise error from None
        try:
            locked, named = os.fstat(fd), os.stat(path)
            if (locked.st_dev, locked.st_ino) == (named.st_dev, named.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed this file while we opened it: lock the current one


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[dict]:
    """Hold `folder`'s lock (making the folder) for the body; yields the holder record written into
    the lock file: pid, host, command (this process's command line) and since (ISO time)."""
    folder = Path(folder)
    key = folder.resolve()
    if key in _held:
        yield _held[key]
        return
    made = [path for path in (folder, *folder.parents) if not path.exists()]
    fd = _open_locked(folder)
    holder = _holder()
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    _held[key] = holder
    try:
        yield holder
    finally:
        del _held[key]
        with contextlib.suppress(FileNotFoundError):  # while still locked, so no one holds a lock on a removed file
            os.unlink(folder / LOCK_FILE)
        for path in made:  # innermost first; stops at the first folder that holds something
            try:
                path.rmdir()
            except OSError:
                break
        os.close(fd)
