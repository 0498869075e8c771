"""Command lines a user can get wrong: a missing recipe, an unknown command or option."""

from __future__ import annotations

from . import PIPELINE, Case, recipe_text

CASES = [
    Case("no-command-option", ("--verbose",), "--verbose"),
    Case("unknown-command", ("foo",), "foo"),
    Case("command-typo", ("trian", "recipe.yaml"), "did you mean 'train'"),
    Case("train-no-recipe", ("train",), "simpo train RECIPE.yaml"),
    Case("pipeline-no-recipe", ("pipeline",), "simpo pipeline RECIPE.yaml"),
    Case("pipeline-dry-run-typo", ("pipeline", "recipe.yaml", "--dryrun"), "dryrun", {"recipe.yaml": recipe_text(PIPELINE)}),
    Case("prepare-model-unknown", ("prepare-model", "gpt-5"), "smollm2-135m-instruct"),
    Case("eval-no-model", ("eval",), "MODEL"),
    Case("eval-unknown-option", ("eval", "smollm2-135m-instruct", "--judg", "x"), "--judg"),
    Case("card-no-run", ("card", "no-such-run"), "no-such-run"),
    Case("chat-no-model", ("chat", "./no-such-model", "--prompt", "hi"), "no-such-model"),
]
