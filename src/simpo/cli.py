"""`simpo` on the command line: parse, load the recipe, run one stage."""

from __future__ import annotations

import logging
import sys

from .allocator import keep_freed_memory
from .config import RecipeError, load_recipe
from .data.rows import DataError

USAGE = """usage: simpo STAGE [RECIPE.yaml] [--key value ...]

stages:
  train RECIPE.yaml [--dry-run]   SimPO training (any recipe key can be overridden)
  generate [RECIPE.yaml]          sample responses per prompt (--generate.prompts, --model_name_or_path, ...)
  annotate [RECIPE.yaml]          score them (--annotate.rewards ...)
  binarize [RECIPE.yaml]          best and worst response as a preference pair
  evaluate [RECIPE.yaml]          greedy held-out accuracy of model_name_or_path
  pipeline RECIPE.yaml            all of the above in order, each stage skipped when done
  prepare-model [ALIAS]           convert a bundled model into the cache once
Keys of a stage section are set as --section.key value, e.g. --generate.seeds [1,2]."""


def _split(tokens: list[str]) -> tuple[str | None, list[str]]:
    """The recipe path (the first token, unless it is an option) and the overrides after it."""
    if tokens and not tokens[0].startswith("--"):
        return tokens[0], tokens[1:]
    return None, tokens


def _train(tokens: list[str]) -> None:
    path, overrides = _split(tokens)
    if path is None:
        raise RecipeError("simpo train needs a recipe file: simpo train RECIPE.yaml [--key value ...]")
    dry_run = "--dry-run" in overrides
    recipe = load_recipe(path, [token for token in overrides if token != "--dry-run"])
    if dry_run:
        print(recipe.to_json())
        return
    from .train import run_training

    run_training(recipe)


def _stage(name: str):
    def run(tokens: list[str]) -> None:
        from .stages import load_pipeline

        path, overrides = _split(tokens)
        if name == "pipeline" and path is None:
            raise RecipeError("simpo pipeline needs a recipe file: simpo pipeline RECIPE.yaml [--key value ...]")
        pipeline = load_pipeline(path, overrides)
        if name == "generate":
            from .generate import run_generate

            print(run_generate(pipeline.train.model, pipeline.generate))
        elif name == "annotate":
            from .annotate import run_annotate

            print(run_annotate(pipeline.annotate))
        elif name == "binarize":
            from .annotate import run_binarize

            print(run_binarize(pipeline.binarize))
        elif name == "evaluate":
            import json
            from pathlib import Path

            from .evaluate import run_evaluate

            label = Path(pipeline.model).name or "model"
            print(json.dumps(run_evaluate(pipeline.train.model, pipeline.evaluate, pipeline.annotate.rewards, label), indent=2))
        else:
            from .pipeline import run_pipeline

            run_pipeline(pipeline)

    return run


def _prepare_model(tokens: list[str]) -> None:
    from .models import BUNDLED, bundled_model_dir

    alias = tokens[0] if tokens else "smollm2-135m-instruct"
    if len(tokens) > 1 or alias not in BUNDLED:
        raise RecipeError(f"prepare-model takes one of: {', '.join(BUNDLED)}")
    print(bundled_model_dir(alias))


STAGES = {
    "train": _train,
    **{name: _stage(name) for name in ("generate", "annotate", "binarize", "evaluate", "pipeline")},
    "prepare-model": _prepare_model,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    keep_freed_memory()  # before the stage allocates anything large
    try:
        STAGES[argv[0]](argv[1:])
    except (RecipeError, DataError) as err:
        print(f"simpo: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
