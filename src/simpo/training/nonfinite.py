"""What a non-finite loss or gradient norm does to a run: `on_nonfinite: stop` (the default) or `skip`.

Each optimizer step is checked before the optimizer takes it: the loss of each of its micro-batches,
and the norm of its gradient accumulated over them (before clipping: the log's `grad_norm`). When one
is NaN or infinite,

- `stop` ends the run with a `TrainingError` naming the step (counted from 1, as the log and
  `checkpoint-N` count steps) and the rows of the batch (each `dataset_mixer` source's rows counted
  from 1, as data errors name them). The step is not applied and nothing after it is saved: the
  newest checkpoint stays as it was, and no model is saved over the output.
- `skip` drops the step's gradients, so the optimizer has nothing to apply: the weights and the
  optimizer's state (Adam's moments and step count) stay as they were. The step counter and the
  learning-rate schedule go on as if the step had been taken, so the batches that follow, the
  schedule and the checkpoints' numbers stay those of the run without the fault. Each skip is
  logged at its step, with its rows; `nonfinite_skips` in the log counts them (a resumed run goes on
  counting), and the end of the run names them all.

Either way, a model with a non-finite weight is never saved (finite gradients can still carry the
weights past the float range): saving stops the run instead, naming the last step.

Under DeepSpeed the engine applies the update inside the backward pass, before the gradient norm is
known: a fault still stops the run before anything is saved, but `skip` is refused there.

Under fp16 the loss scaler owns non-finite gradients (it skips such steps and lowers its scale), so
only the losses are checked there. With several processes, the processes' findings are gathered
before deciding, so that every process takes the same decision.
"""

from __future__ import annotations

import logging
import math

import torch
from transformers import TrainerCallback

from ..errors import TrainingError
from .checkpoints import newest_complete_checkpoint
from .sharding import local_values

logger = logging.getLogger("simpo")

SKIPS = "nonfinite_skips"  # the logged count of skipped steps
WHAT_TO_DO = "lower learning_rate, check those rows, or set on_nonfinite: skip to skip such steps"


def describe_rows(row_ids: list[tuple[str, int]]) -> str:
    """`rows 3, 8 of a.jsonl and row 2 of b.jsonl`: each source's rows, sources in order of appearance."""
    if not row_ids:
        return "rows not recorded (the dataset has no row column)"
    by_source: dict[str, set[int]] = {}
    for source, row in row_ids:
        by_source.setdefault(source, set()).add(row)
    return " and ".join(f"{'row' if len(rows) == 1 else 'rows'} {', '.join(map(str, sorted(rows)))} of {source}"
                        for source, rows in by_source.items())


class NonFiniteGuard(TrainerCallback):
    """The checks of one trainer: `record` each micro-batch's loss, `step_is_skipped` before each
    optimizer step, `check_weights` before each save."""

    def __init__(self, mode: str, output_dir: str, accelerator, check_gradients: bool = True):
        self.mode = mode
        self.output_dir = output_dir
        self.accelerator = accelerator
        self.check_gradients = check_gradients
        self._micro_batches: list[tuple[torch.Tensor, list]] = []  # (loss, row ids) of the step under way
        self.last_rows: list[tuple[str, int]] = []  # the rows of the last step checked
        self.skipped: list[tuple[int, str]] = []  # (step, its rows) of each skip of this run
        self.earlier_skips = 0  # those counted before this run resumed
        self._skipped_now = False

    @property
    def skips(self) -> int:
        return self.earlier_skips + len(self.skipped)

    def record(self, loss: torch.Tensor, row_ids) -> None:
        self._micro_batches.append((loss.detach(), list(row_ids or [])))

    def step_is_skipped(self, step: int, grad_norm) -> bool:
        """Whether the update of `step` (counted from 1) is to be skipped; under `stop`, a fault raises instead."""
        micro_batches, self._micro_batches = self._micro_batches, []
        found = {"losses": [], "loss_rows": [], "rows": []}
        for loss, rows in micro_batches:
            value = loss.float().item()
            found["rows"] += rows
            if not math.isfinite(value):
                found["losses"].append(value)
                found["loss_rows"] += rows
        found = self._gathered(found)
        self.last_rows = found["rows"]
        norm = float(grad_norm) if grad_norm is not None and self.check_gradients else 0.0
        if not found["losses"] and math.isfinite(norm):
            return False
        if found["losses"]:
            problem = f"the loss is {' and '.join(sorted(set(map(str, found['losses']))))} on {describe_rows(found['loss_rows'])}"
            problem += "" if math.isfinite(norm) else f" (gradient norm {norm})"
        else:
            problem = f"the gradient norm is {norm} on the batch of {describe_rows(found['rows'])}"
        if self.mode == "stop":
            raise TrainingError(f"step {step}: {problem}; the run stopped: {self._nothing_saved()}; {WHAT_TO_DO}")
        self.skipped.append((step, describe_rows(found["rows"])))  # the rows whose update was not applied
        self._skipped_now = True
        logger.warning("step %d: %s; its update is skipped (on_nonfinite: skip), %d skipped so far", step, problem, self.skips)
        return True

    def check_weights(self, model, step: int) -> None:
        """Raises `TrainingError` when a weight is non-finite (before anything is saved). Each process
        checks the values it holds (under ZeRO-3 and FSDP its share of each weight), and all take
        the decision on every process's findings."""
        bad = [name for name, weight in model.named_parameters() if not torch.isfinite(local_values(weight)).all()]
        found = self._gathered({"weights": bad})["weights"]
        bad = [name for name, _ in model.named_parameters() if name in found]  # in the model's order
        if bad:
            raise TrainingError(
                f"step {step}: the update made {len(bad)} weight tensors non-finite ({bad[0]} first), after the batch of "
                f"{describe_rows(self.last_rows)}; the run stopped before saving them: {self._nothing_saved()}; lower learning_rate"
            )

    def _nothing_saved(self) -> str:
        checkpoint = newest_complete_checkpoint(self.output_dir)
        kept = f"the newest checkpoint, {checkpoint}, is as it was" if checkpoint else "no checkpoint had been saved"
        return f"nothing of this step was saved and {kept}"

    def _gathered(self, found: dict[str, list]) -> dict[str, list]:
        """Every process's findings, so that all take the same decision (one process: its own)."""
        if self.accelerator is None or self.accelerator.num_processes == 1:
            return found
        from accelerate.utils import gather_object

        merged: dict[str, list] = {key: [] for key in found}
        for each in gather_object([found]):
            for key, values in each.items():
                merged[key] += [tuple(value) if isinstance(value, list) else value for value in values]
        return merged

    # TrainerCallback: the count goes on across a resume, each skip is logged at its step, the end names them.
    def on_train_begin(self, args, state, control, **kwargs):
        self.earlier_skips = next((entry[SKIPS] for entry in reversed(state.log_history) if SKIPS in entry), 0)
        self.skipped.clear()

    def on_step_end(self, args, state, control, **kwargs):
        if self._skipped_now:
            control.should_log = True
            self._skipped_now = False

    def on_train_end(self, args, state, control, **kwargs):
        if self.skips:
            steps = ", ".join(f"step {step} ({rows})" for step, rows in self.skipped) or "none"
            earlier = f"; {self.earlier_skips} before this run resumed" if self.earlier_skips else ""
            logger.warning("on_nonfinite: skip: %d step%s with a non-finite loss or gradient not applied: %s%s",
                           self.skips, "" if self.skips == 1 else "s", steps, earlier)
