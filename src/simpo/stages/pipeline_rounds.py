"""The rounds of `simpo pipeline` (`rounds: N`): each round's settings and folders, what it did, `rounds.png`.

Round k samples from round k-1's model (round 1 from the recipe's), and trains starting from it, on
its own pairs. With one round every folder is RUN_DIR's own (`generations/`, ..., `model/`), as a
pipeline always had it; with N > 1, round k writes RUN_DIR/round-K/ (`generations/`, `scores/`,
`pairs/`, `eval/`, `model/`), except that the last round's model is RUN_DIR/model, where one round
puts it. A reference-based loss compares with round k-1's model (`reference: round_start`) or the
recipe's (`base`). Under `prompts_per_round: split` round k takes the k-th of N contiguous parts of
the usable prompts, so no prompt is sampled in two rounds; under `same`, every round takes them all.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config.pipeline import Pipeline
from ..config.recipe import build_recipe
from ..training.curves import save_figure

FIGURE = "rounds.png"


def round_dir(pipeline: Pipeline, k: int) -> Path:
    return pipeline.run_dir if pipeline.rounds == 1 else pipeline.run_dir / f"round-{k}"


def round_model(pipeline: Pipeline, k: int) -> str:
    """The model round k trains into (round 0: the recipe's model)."""
    if k == 0:
        return pipeline.model
    return pipeline.train.training.output_dir if k == pipeline.rounds else str(round_dir(pipeline, k) / "model")


def round_pipeline(pipeline: Pipeline, k: int) -> Pipeline:
    """Round k's settings (from 1): its folders, its starting model, its pairs and output model."""
    if pipeline.rounds == 1:
        return pipeline
    folder = round_dir(pipeline, k)
    generate = dataclasses.replace(pipeline.generate, output=str(folder / "generations"))
    annotate = dataclasses.replace(pipeline.annotate, input=generate.output, output=str(folder / "scores"))
    binarize = dataclasses.replace(pipeline.binarize, input=annotate.output, output=str(folder / "pairs"))
    evaluate = dataclasses.replace(pipeline.evaluate, output=str(folder / "eval"))
    values = {**pipeline.train.raw, "model_name_or_path": round_model(pipeline, k - 1), "dataset_mixer": {binarize.output: 1.0},
              "output_dir": round_model(pipeline, k)}
    if k > 1 and pipeline.reference == "base" and pipeline.train.training.needs_reference:
        values["ref_model_name_or_path"] = pipeline.model
    train = build_recipe(values, f"round {k} of the recipe")
    return dataclasses.replace(pipeline, train=train, generate=generate, annotate=annotate, binarize=binarize, evaluate=evaluate)


def round_part(pipeline: Pipeline, k: int) -> tuple[int, int] | None:
    """The part of the prompts round k samples (`run_generate`'s `part`), None: all of them."""
    if pipeline.rounds == 1 or pipeline.prompts_per_round == "same":
        return None
    return k - 1, pipeline.rounds


def round_record(k: int, evaluation: dict, pairs: dict | None) -> dict:
    """What round k did (k = 0: the starting model, evaluated only): held-out accuracy, answer length and
    repetition; the samples' mean score, the share of prompts that gave a pair, chosen/rejected lengths."""
    record = {"round": k, "model": evaluation["model"], "accuracy": evaluation["accuracy"],
              "mean_length_tokens": evaluation["mean_length_tokens"], "repetitive": evaluation.get("repetitive"),
              "truncated": evaluation.get("truncated")}
    if pairs is not None:
        record.update({key: pairs[key] for key in ("prompts", "pairs", "pair_share", "mean_score", "chosen_length",
                                                   "rejected_length", "length_unit")})
        record["samples_truncated"] = pairs["truncated"] / max(pairs["responses"], 1) if pairs["truncated"] is not None else None
    return record


def _cell(record: dict, key: str, form: str) -> str:
    value = record.get(key)
    return "-" if value is None else format(value, form)


COLUMNS = (  # (title, key, format)
    ("accuracy", "accuracy", ".4f"), ("answer len", "mean_length_tokens", ".1f"), ("repeats", "repetitive", ".0%"),
    ("mean score", "mean_score", ".3f"), ("pair share", "pair_share", ".0%"), ("chosen len", "chosen_length", ".1f"),
    ("rejected len", "rejected_length", ".1f"), ("cut samples", "samples_truncated", ".0%"),
)


def rounds_table(records: list[dict]) -> str:
    """One line per round (round 0: the starting model): held-out accuracy, mean answer length (tokens),
    the share of answers that repeat themselves; the samples' mean score, the share of prompts that
    gave a pair, the chosen and rejected lengths, the share of samples cut at the token limit."""
    lines = [f"{'round':<7}" + "".join(f"{title:>13}" for title, _, _ in COLUMNS)]
    for record in records:
        lines.append(f"{record['round']:<7}" + "".join(f"{_cell(record, key, form):>13}" for _, key, form in COLUMNS))
    return "\n".join(lines)


def write_rounds_figure(records: list[dict], target: Path) -> Path:
    """`rounds.png`: each round's numbers against the round, written whole (temporary file, rename)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(13, 7.5), layout="constrained")
    figure.suptitle(f"{target.parent.name}: {len(records) - 1} rounds (round 0: the starting model)")
    panels = (
        ("held-out accuracy", ("accuracy",)), ("mean answer length (tokens)", ("mean_length_tokens",)),
        ("share of answers that repeat themselves", ("repetitive",)), ("samples' mean score", ("mean_score",)),
        ("share of prompts that gave a pair", ("pair_share",)), ("chosen and rejected length", ("chosen_length", "rejected_length")),
    )
    colors = {"chosen_length": "tab:green", "rejected_length": "tab:red"}
    for ax, (title, keys) in zip(figure.subplots(2, 3).ravel(), panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        for key in keys:
            points = [(record["round"], record[key]) for record in records if record.get(key) is not None]
            if points:
                ax.plot(*zip(*points), "o-", color=colors.get(key, "tab:blue"), label=key.split("_")[0] if len(keys) > 1 else None)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    return save_figure(figure, target)
