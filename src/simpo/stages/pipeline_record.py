"""`RUN_DIR/pipeline.json`: one entry per `simpo pipeline` run of the folder, and the latest results.

```
{"runs": [{"pid": 4242, "host": "...", "command": "simpo pipeline r.yaml", "since": "2025-01-02T10:00:00+00:00",
           "status": "finished", "seconds": {"generate": 305.2, "annotate": 1.1, ...}},
          {..., "status": "failed", "failed_stage": "generate", "error": "RuntimeError: CUDA out of memory",
           "seconds": {"generate": 571.0}}],
 "before": {...}, "after": {...}}
```

A run's entry starts as the holder record of RUN_DIR's lock (`stages.lock`) with status `running`.
The file is rewritten whole (temporary file and rename) after every stage and when the run ends, so
a failed run keeps the seconds of its stages, the failed one included, and a killed run those it
finished. A killed run stays `running` until the next run, which holds the folder's lock and so knows
that no earlier run still runs, marks it `interrupted`. `before` and `after` are the held-out results
of the newest finished run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import DataError, read_json
from .shards import write_atomic

FILENAME = "pipeline.json"

T = TypeVar("T")


class PipelineRecord:
    """This run's entry in `run_dir/pipeline.json`, after the earlier runs'; nothing is written until
    the first `timed` stage returns or `fail` is called."""

    def __init__(self, run_dir: Path, holder: dict):
        self.path = Path(run_dir) / FILENAME
        self.record = read_json(self.path, dict, DataError, "the record of this folder's pipeline runs") if self.path.is_file() else {}
        runs = self.record.setdefault("runs", [])
        if not isinstance(runs, list) or not all(isinstance(run, dict) and isinstance(run.get("seconds"), dict) for run in runs):
            raise DataError(f"{self.path}: 'runs' is not a list of runs as simpo pipeline writes them; the file is damaged: "
                            "restore or delete it")
        for run in runs:
            if run.get("status") == "running":
                run["status"] = "interrupted"
        self.run = {**holder, "status": "running", "seconds": {}}
        runs.append(self.run)

    def timed(self, stage: str, work: Callable[[], T]) -> T:
        """`work()`, its seconds recorded under `stage` also when it raises; the file rewritten when it returns."""
        start = time.perf_counter()
        try:
            result = work()
        except BaseException:
            self.run["failed_stage"] = stage
            raise
        finally:
            self.run["seconds"][stage] = time.perf_counter() - start
        self.save()
        return result

    def finish(self, results: dict) -> None:
        self.run["status"] = "finished"
        self.record.update(results)
        self.save()

    def fail(self, error: BaseException) -> None:
        message = str(error).strip().splitlines()
        self.run["status"] = "failed"
        self.run["error"] = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
        self.save()

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.record, indent=2) + "\n")


def total_seconds(record: dict) -> dict[str, float]:
    """Seconds per stage summed over every run in a pipeline.json (finished, failed, interrupted or
    running): the time spent building the folder."""
    totals: dict[str, float] = {}
    for run in record.get("runs", []):
        for stage, seconds in run["seconds"].items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    return totals
