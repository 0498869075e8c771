"""`simpo card RUN_DIR`: the trained model folder's README.md, a Hugging Face model card.

RUN_DIR is a pipeline run folder (the model in `model/`, `simpo eval` results in `benchmarks/`,
`pipeline.json` with the stage seconds of every run, the stages' manifests saying how the pairs were
made) or a training `output_dir` itself (`recipe.yaml`, `trainer_state.json`, `config.json`). This module reads
the run; `models/card.py` writes the text. The card replaces `README.md` in one step (temporary file
and rename), so a reader never sees half of it, and only a README.md that simpo wrote (its marker
line, `models.card.MARKER`): one the user wrote is refused in one line, left as it is.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import yaml

from ..config.recipe_kind import MODEL_FILES, read_recipe_file
from ..errors import DataError, OptionParser, RecipeError, option_rows, read_json
from ..evals.table import load_results
from ..models.card import BUNDLED_ORIGINS, MARKER, CardFacts, render_card, replaceable
from ..training.curves import FILENAME as CURVES
from ..training.run_folder import check_whole
from ..training.run_info import RUN_INFO
from .pipeline_record import FILENAME as PIPELINE_RECORD
from .pipeline_record import total_seconds
from .shards import write_if_changed

logger = logging.getLogger("simpo")

OPTIONS = (  # (flag, argparse settings): the parser and `simpo card --help` are both made from these
    ("--eval", {"type": str, "default": None, "help": "The simpo eval results folder; unset: RUN_DIR/benchmarks when it exists"}),
    ("--output", {"type": str, "default": None, "help": "Where the card goes; unset: README.md in the model folder"}),
)
OPTION_ROWS = option_rows(OPTIONS)
TRAINING_FILES = ("recipe.yaml", "trainer_state.json", "config.json")  # a LoRA run: adapter_config.json for config.json


def parse_options(tokens: list[str]) -> argparse.Namespace:
    return OptionParser.of("simpo card", "run_dir", OPTIONS).parse_args(tokens)


def locate_model(run_dir: Path) -> tuple[Path, Path | None]:
    """(the model folder, the pipeline run folder or None) of RUN_DIR; a RecipeError saying what a run
    folder holds when it is neither kind."""
    def holds_run(folder: Path) -> bool:
        return all(any((folder / file).is_file() for file in (MODEL_FILES if name == "config.json" else (name,)))
                   for name in TRAINING_FILES)

    for folder in (run_dir / "model", run_dir):  # a save simpo never finished is said as such
        check_whole(folder)
    if holds_run(run_dir / "model"):
        return run_dir / "model", run_dir
    if holds_run(run_dir):
        return run_dir, None
    raise RecipeError(
        f"{run_dir} is not a run folder: expected a pipeline run folder (with model/ holding {', '.join(TRAINING_FILES)}) "
        f"or a training output_dir holding {', '.join(TRAINING_FILES)}"
    )


_KINDS = {dict: "a mapping", list: "a list", str: "text"}


def _json(path: Path) -> dict:
    """A JSON object the run wrote (empty when the file is not there); a damaged one is named."""
    return read_json(path, dict, DataError, "a file of the run folder") if path.is_file() else {}


def _license(base: str) -> str | None:
    """The base model's license: known for a bundled alias, else from its folder's README front matter."""
    if base in BUNDLED_ORIGINS:
        return BUNDLED_ORIGINS[base][1]
    readme = Path(base) / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text()
    if not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1])
    except yaml.YAMLError:
        return None
    return meta.get("license") if isinstance(meta, dict) else None


def _datasets(recipe: dict, run_info: dict) -> list[dict]:
    """The recipe's sources: a hub name or a local one (as the training run saw it), with pair counts
    of local JSONL splits."""
    local = run_info.get("local_datasets")
    found = []
    for source, fraction in recipe.get("dataset_mixer", {}).items():
        is_local = source in local if local is not None else Path(source).exists()
        counts = {}
        for split in recipe.get("dataset_splits", ["train", "test"]):
            rows = Path(source) / f"{split}.jsonl"
            if is_local and rows.is_file():
                with open(rows) as lines:
                    counts[split] = sum(1 for line in lines if line.strip())
        found.append({"source": source, "fraction": fraction, "hub": not is_local, "pairs": counts or None})
    return found


def _on_policy(pipeline_dir: Path) -> dict | None:
    # One round's stage folders are the run folder's; with several rounds, round-1/ holds the first's.
    first = pipeline_dir if (pipeline_dir / "generations").is_dir() else pipeline_dir / "round-1"
    generate = _json(first / "generations" / "manifest.json")
    if not generate:
        return None
    return {"generate": generate, "rewards": _json(first / "scores" / "manifest.json").get("rewards", [])}


def _is_model(named: str, model_dir: Path) -> bool:
    return Path(named).resolve() == model_dir.resolve()


def gather_facts(run_dir: str | Path, eval_folder: str | Path | None = None, output: Path | None = None) -> CardFacts:
    """Everything the card states, read from the run folder, its model and its evaluation results."""
    from transformers import AutoTokenizer

    from ..data.chat import stop_token_ids

    run_dir = Path(run_dir)
    model_dir, pipeline_dir = locate_model(run_dir)
    output = output or model_dir / "README.md"
    recipe = read_recipe_file(model_dir / "recipe.yaml")
    run_info = _json(model_dir / RUN_INFO)
    state = _json(model_dir / "trainer_state.json")
    shapes = (("recipe.yaml", recipe, "model_name_or_path", str), ("recipe.yaml", recipe, "dataset_mixer", dict),
              ("recipe.yaml", recipe, "dataset_splits", list),
              ("trainer_state.json", state, "log_history", list), (RUN_INFO, run_info, "local_datasets", list))
    for file, values, key, kind in shapes:
        if values.get(key) is not None and not isinstance(values[key], kind):
            raise DataError(f"{model_dir / file}: {key} is not {_KINDS[kind]} as the training run "
                            "writes it; the file is damaged: restore it, or train again")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    stop_ids = stop_token_ids(tokenizer)
    folder = Path(eval_folder) if eval_folder is not None else run_dir / "benchmarks"
    results = load_results(folder) if eval_folder is not None or folder.is_dir() else {}
    own = next((row for row in results.values() if any(_is_model(result["model"], model_dir) for result in row.values())), {})
    if results and not own:
        logger.warning("card: no result in %s is for %s; the card shows the table but no model-index", folder, model_dir)
    curves = model_dir / CURVES
    return CardFacts(
        name=(pipeline_dir or model_dir).resolve().name, model_path=str(model_dir), recipe=recipe,
        log_history=state.get("log_history") or [],
        stop_tokens=list(zip(tokenizer.convert_ids_to_tokens(stop_ids), stop_ids)),
        datasets=_datasets(recipe, run_info), run_info=run_info, base_license=_license(recipe.get("model_name_or_path", "")),
        on_policy=_on_policy(pipeline_dir) if pipeline_dir else None,
        pipeline_seconds=total_seconds(_json(pipeline_dir / PIPELINE_RECORD)) if pipeline_dir else None,
        rounds=_json(pipeline_dir / PIPELINE_RECORD).get("rounds") if pipeline_dir else None,
        results=results or None, own_results=own, eval_folder=str(folder),
        curves_link=os.path.relpath(curves, output.resolve().parent) if curves.is_file() else None,
    )


def check_replaceable(target: Path) -> None:
    """A `RecipeError` unless `target` is free or a card simpo (or a library saving the weights) wrote
    (models.card.replaceable): a README.md the user wrote is never replaced."""
    if not target.exists() and not target.is_symlink():
        return
    try:
        text = target.read_text(errors="replace") if target.is_file() else None
    except OSError as err:
        raise RecipeError(f"{target} cannot be read ({err.strerror}), so whether simpo wrote it cannot be told; it is left "
                          "as it is: write the card elsewhere with --output") from None
    if text is None or not replaceable(text):
        raise RecipeError(f"{target} was not written by simpo card (it has no '{MARKER.split(',')[0]}' line), so it is left "
                          "as it is: move it away, or write the card elsewhere with --output")


def write_card(run_dir: str | Path, eval_folder: str | Path | None = None, output: str | Path | None = None) -> Path:
    """Write the model card of RUN_DIR (to `output`, else the model folder's README.md) and return its path."""
    output = Path(output) if output is not None else None
    target = output or locate_model(Path(run_dir))[0] / "README.md"
    check_replaceable(target)
    facts = gather_facts(run_dir, eval_folder, output)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_if_changed(target, render_card(facts))
    return target


def run_card(tokens: list[str]) -> Path:
    """`simpo card` with its command-line tokens."""
    options = parse_options(tokens)
    return write_card(options.run_dir, options.eval, options.output)
