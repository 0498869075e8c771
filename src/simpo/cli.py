"""`simpo` on the command line: parse, load the recipe, run one stage."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import RecipeError, load_recipe
from .data.rows import DataError

USAGE = """simpo train RECIPE.yaml [--dry-run] [--key value ...]
       simpo prepare-model [ALIAS]"""


def _train(args: argparse.Namespace, overrides: list[str]) -> None:
    dry_run = "--dry-run" in overrides
    recipe = load_recipe(args.recipe, [token for token in overrides if token != "--dry-run"])
    if dry_run:
        print(recipe.to_json())
        return
    from .train import run_training

    run_training(recipe)


def _prepare_model(args: argparse.Namespace, overrides: list[str]) -> None:
    from .models import BUNDLED, bundled_model_dir

    if overrides or args.alias not in BUNDLED:
        raise RecipeError(f"prepare-model takes one of: {', '.join(BUNDLED)}")
    print(bundled_model_dir(args.alias))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simpo", usage=USAGE)
    stages = parser.add_subparsers(dest="stage", required=True)
    train = stages.add_parser("train", help="SimPO training from a YAML recipe")
    train.add_argument("recipe")
    train.set_defaults(run=_train)
    prepare = stages.add_parser("prepare-model", help="convert a bundled model into the cache once")
    prepare.add_argument("alias", nargs="?", default="smollm2-135m-instruct")
    prepare.set_defaults(run=_prepare_model)
    args, overrides = parser.parse_known_args(argv)

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        args.run(args, overrides)
    except (RecipeError, DataError) as err:
        print(f"simpo: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
