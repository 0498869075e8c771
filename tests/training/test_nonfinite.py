"""A non-finite loss or gradient (`on_nonfinite`): `stop` ends the run naming the step and the rows,
with the last checkpoint intact and no model saved over the output; `skip` leaves the weights and
the optimizer as they were, so the run ends where a run without that batch ends; a model with a
non-finite weight is never saved."""

from __future__ import annotations

import json
import logging
import re
from types import SimpleNamespace

import pytest
import torch
import yaml
from helpers import recipe_values, write_jsonl
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.cli import main
from simpo.config.recipe import build_recipe
from simpo.data.bundled import make_rows
from simpo.data.collate import PairCollator
from simpo.data.dataset import build_pair_datasets
from simpo.data.encode import PairEncoder
from simpo.errors import TrainingError
from simpo.training.checkpoints import is_complete_checkpoint
from simpo.training.nonfinite import SKIPS, NonFiniteGuard, describe_rows
from simpo.training.trainer import SimPOTrainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rows_are_named_by_source_counted_from_one():
    assert describe_rows([("a.jsonl", 8), ("a.jsonl", 3), ("b.jsonl", 2)]) == "rows 3, 8 of a.jsonl and row 2 of b.jsonl"
    assert describe_rows([]) == "rows not recorded (the dataset has no row column)"


def _cli_run(tiny_model_dir, tmp_path, **extra):
    folder = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs" / "train.jsonl", make_rows(8, seed=5))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_values(folder, data.parent, tmp_path / "out", max_steps=4, save_strategy="steps",
                                                   save_steps=1, **extra)))
    return data, ["train", str(recipe)]


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("simpo: error:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_an_absurd_learning_rate_stops_naming_the_step_and_rows_and_keeps_the_last_checkpoint(tiny_model_dir, tmp_path, capsys):
    # One batch of all 8 rows a step: step 1's gradient is finite and takes the weights to ~1e30,
    # step 2's is NaN.
    data, argv = _cli_run(tiny_model_dir, tmp_path, learning_rate=1e30, per_device_train_batch_size=8)
    assert main(argv) == 3
    out = tmp_path / "out"
    assert _error_line(capsys) == (
        f"simpo: error: step 2: the gradient norm is nan on the batch of rows 1, 2, 3, 4, 5, 6, 7, 8 of {data}; "
        f"the run stopped: nothing of this step was saved and the newest checkpoint, {out / 'checkpoint-1'}, is as it was; "
        "lower learning_rate, check those rows, or set on_nonfinite: skip to skip such steps")
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint-1", "recipe.yaml"]  # no model saved over the output
    assert is_complete_checkpoint(out / "checkpoint-1")
    assert json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())["global_step"] == 1
    weights = load_file(out / "checkpoint-1" / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


def test_weights_carried_past_the_float_range_are_never_saved(tiny_model_dir, tmp_path, capsys):
    # lr 1e39: a finite gradient, and an update that overflows fp32.
    data, argv = _cli_run(tiny_model_dir, tmp_path, learning_rate=1e39, per_device_train_batch_size=8)
    assert main(argv) == 3
    line = _error_line(capsys)
    assert line.startswith("simpo: error: step 1: the update made 20 weight tensors non-finite (model.embed_tokens.weight first), "
                           f"after the batch of rows 1, 2, 3, 4, 5, 6, 7, 8 of {data}; the run stopped before saving them")
    assert "no checkpoint had been saved" in line
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["recipe.yaml"]


class RecordingCollator(PairCollator):
    """The pair collator, keeping the rows of every training micro-batch in order."""

    def __init__(self, *args):
        super().__init__(*args)
        self.batches: list[list] = []

    def __call__(self, features):
        batch = super().__call__(features)
        self.batches.append(batch["row_ids"])
        return batch


class PoisonedTrainer(SimPOTrainer):
    """Makes the loss of one training micro-batch (counted from 1) NaN (so its gradient is NaN too) or
    infinite (a constant added: the gradient stays finite, only the loss check can see it)."""

    def __init__(self, *args, poison_call: int = 0, poison: str = "nan", **kwargs):
        super().__init__(*args, **kwargs)
        self.poison_call, self.poison, self.calls = poison_call, poison, 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            self.calls += 1
            if self.calls == self.poison_call:
                loss = loss * float("nan") if self.poison == "nan" else loss + float("inf")
        return loss


def _trainer(folder, data, out, train=None, poison_call=0, poison="nan", **extra):
    """A SimPO trainer on `data`'s pairs in file order per step (sequential sampler), AdamW with weight decay."""
    values = recipe_values(folder, data, out, train_sampling_strategy="sequential", weight_decay=0.1, **extra)
    recipe = build_recipe(values)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if train is None:
        train, _ = build_pair_datasets(recipe.data, PairEncoder(tokenizer, 128, 64), seed=0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    collator = RecordingCollator(tokenizer.pad_token_id, True, True)
    return PoisonedTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=train,
                           data_collator=collator, poison_call=poison_call, poison=poison), train


@pytest.mark.parametrize("accumulation,poison,micro_batch", [(1, "nan", 2), (2, "inf", 4)])
def test_stop_names_the_step_and_the_rows_of_the_faulty_micro_batch(accumulation, poison, micro_batch, tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs" / "train.jsonl", make_rows(8, seed=5))
    trainer, _ = _trainer(folder, data.parent, tmp_path / "out", poison_call=micro_batch, poison=poison,
                          per_device_train_batch_size=2 // accumulation, gradient_accumulation_steps=accumulation)
    with pytest.raises(TrainingError) as stopped:
        trainer.train()
    rows = trainer.data_collator.batches[micro_batch - 1]
    gradient = " (gradient norm nan)" if poison == "nan" else ""  # an added constant leaves the gradient finite
    assert str(stopped.value).startswith(f"step 2: the loss is {poison} on {describe_rows(rows)}{gradient}; the run stopped")
    assert trainer.state.global_step == 1


@pytest.mark.parametrize("accumulation,poison", [(1, "nan"), (2, "inf")])
def test_skip_ends_where_the_run_without_that_batch_ends(accumulation, poison, tiny_model_dir, tmp_path, caplog):
    """8 pairs, 2 a step: the second step poisoned (with accumulation 2, only its second micro-batch's
    loss, whose gradient stays finite) and skipped ends with the weights of a run on the other 6 pairs,
    bit for bit: neither the weights nor AdamW's moments, step count or weight decay saw that step."""
    folder = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs" / "train.jsonl", make_rows(8, seed=5))
    settings = dict(per_device_train_batch_size=2 // accumulation, gradient_accumulation_steps=accumulation)
    skipping, train = _trainer(folder, data.parent, tmp_path / "skip", on_nonfinite="skip", poison_call=2 * accumulation,
                               poison=poison, **settings)
    initial = {name: weight.detach().clone() for name, weight in skipping.model.named_parameters()}
    with caplog.at_level(logging.WARNING, logger="simpo"):
        skipping.train()
    skipped_rows = [(source, row) for source, row in zip(train["source"][2:4], train["row"][2:4])]  # the second step's
    assert [row for batch in skipping.data_collator.batches[accumulation : 2 * accumulation] for row in batch] == skipped_rows
    assert skipping.state.global_step == 4 and skipping.nonfinite.skipped == [(2, describe_rows(skipped_rows))]
    logged = [entry for entry in skipping.state.log_history if "loss" in entry]
    assert [entry[SKIPS] for entry in logged] == [0, 1, 1, 1]
    assert f"step 2 ({describe_rows(skipped_rows)})" in caplog.text and "1 step with a non-finite loss or gradient not applied" in caplog.text

    without = train.select([0, 1, 4, 5, 6, 7])
    plain, _ = _trainer(folder, data.parent, tmp_path / "plain", train=without, **settings)
    plain.train()
    assert plain.state.global_step == 3
    trained = dict(plain.model.named_parameters())
    for name, weight in skipping.model.named_parameters():
        assert torch.isfinite(weight).all(), name
        assert torch.equal(weight, trained[name]), name
    assert any(not torch.equal(weight, initial[name]) for name, weight in skipping.model.named_parameters())


def test_a_resumed_run_goes_on_counting_its_skips(tmp_path):
    guard = NonFiniteGuard("skip", str(tmp_path), None)
    history = [{"loss": 1.0, SKIPS: 1, "step": 1}, {"loss": 1.0, SKIPS: 2, "step": 5}, {"eval_loss": 1.0, "step": 5}]
    guard.on_train_begin(None, SimpleNamespace(log_history=history), None)
    assert guard.skips == 2
    guard.record(torch.tensor(float("inf")), [("a.jsonl", 4)])
    assert guard.step_is_skipped(6, torch.tensor(1.0)) and guard.skips == 3


def test_under_fp16_the_gradient_is_the_loss_scalers(tmp_path):
    """fp16's loss scaler skips steps with overflowing gradients itself; only the loss is checked."""
    guard = NonFiniteGuard("stop", str(tmp_path), None, check_gradients=False)
    guard.record(torch.tensor(0.5), [("a.jsonl", 1)])
    assert not guard.step_is_skipped(3, torch.tensor(float("inf")))
    guard.record(torch.tensor(float("nan")), [("a.jsonl", 1)])
    with pytest.raises(TrainingError, match=re.escape("step 4: the loss is nan on row 1 of a.jsonl; the run stopped: nothing of "
                                                      "this step was saved and no checkpoint had been saved")):
        guard.step_is_skipped(4, torch.tensor(1.0))
