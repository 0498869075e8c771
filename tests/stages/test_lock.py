"""`folder_lock`: a second process on a locked folder stops at once naming the holder, a holder killed
with SIGKILL leaves a lock file that blocks no one, one process may nest locks, and a lock leaves
nothing in a folder nothing else was written into."""

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from helpers import lock_holder, write_jsonl

from simpo.cli import main
from simpo.errors import RecipeError
from simpo.stages.lock import LOCK_FILE, folder_lock


def _is_locked(folder) -> bool:
    """Whether some open file holds the lock of `folder` (flock is per open file, so this process's own counts)."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_second_process_stops_naming_the_holder_until_the_holder_is_killed(tmp_path):
    scores, pairs = tmp_path / "scores", tmp_path / "pairs"
    write_jsonl(scores / "shard-00000.jsonl", [
        {"prompt_id": f"p{i}", "prompt": f"What is {i} + 1?", "all_generated_responses": [f"{i + 1}", "no idea"], "all_rm_scores": [1.0, 0.0]}
        for i in range(4)
    ])
    (scores / "COMPLETE").write_text("")
    args = ["binarize", "--model_name_or_path", "smollm2-135m-instruct", "--binarize.input", str(scores), "--binarize.output", str(pairs),
            "--binarize.test_size", "1"]
    with lock_holder(pairs) as holder:
        second = subprocess.run([sys.executable, "-m", "simpo.cli", *args], capture_output=True, text=True, timeout=600)
        assert (second.returncode, second.stdout) == (2, "")
        [line] = second.stderr.splitlines()
        assert line.startswith(f"simpo: error: {pairs} is being written by pid {holder.pid} on {socket.gethostname()} (")
        assert line.endswith(": wait for it to finish, or use another folder")
        assert os.listdir(pairs) == [LOCK_FILE]  # the second process wrote nothing
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert json.loads((pairs / LOCK_FILE).read_text())["pid"] == holder.pid  # its lock file stays, stale
        assert main(args) == 0  # and blocks no one
    assert sorted(os.listdir(pairs)) == ["COMPLETE", "manifest.json", "stats.json", "test.jsonl", "train.jsonl"]  # the lock file went with the lock


def test_one_process_nests_locks_and_leaves_nothing_it_did_not_write(tmp_path):
    run = tmp_path / "outputs" / "run"
    with folder_lock(run) as outer:
        assert (outer["pid"], outer["host"]) == (os.getpid(), socket.gethostname())
        with folder_lock(run / "generations") as inner:
            assert json.loads((run / LOCK_FILE).read_text()) == outer
            assert json.loads((run / "generations" / LOCK_FILE).read_text()) == inner
            with folder_lock(run) as again:  # a folder this process holds: the same lock
                assert again is outer
            assert _is_locked(run) and _is_locked(run / "generations")
            (run / "generations" / "shard-00000.jsonl").write_text("{}\n")
        assert os.listdir(run / "generations") == ["shard-00000.jsonl"]
        assert _is_locked(run)
    assert os.listdir(run) == ["generations"]
    with folder_lock(tmp_path / "empty" / "made"):
        pass
    assert not (tmp_path / "empty").exists()  # made by the lock, nothing written: removed with its parent


def test_a_file_in_the_way_is_a_one_line_error(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(RecipeError, match="taken cannot be used as an output folder"):
        with folder_lock(tmp_path / "taken"):
            pass
    assert (tmp_path / "taken").read_text() == "a file"
