"""Recipes: loading, overrides, validation errors, and the CLI's --dry-run."""

import json

import pytest

from simpo.cli import main
from simpo.config import RecipeError, build_recipe, load_recipe, parse_overrides
from conftest import REPO

BASE = {"model_name_or_path": "smollm2-135m-instruct", "dataset_mixer": {"data/verifiable-prefs": 1.0}}

OFFICIAL = [
    "gemma-2-9b-it-simpo", "llama-3-8b-instruct-simpo-v2", "llama-3-8b-instruct-simpo",
    "mistral-7b-instruct-simpo", "llama-3-8b-base-simpo", "mistral-7b-base-simpo",
]


@pytest.mark.parametrize("name,beta,ratio,lr", [
    ("gemma-2-9b-it-simpo", 10, 0.5, 8e-7), ("llama-3-8b-instruct-simpo-v2", 10, 0.3, 1e-6),
    ("llama-3-8b-instruct-simpo", 2.5, 0.55, 1e-6), ("mistral-7b-instruct-simpo", 2.5, 0.1, 5e-7),
    ("llama-3-8b-base-simpo", 2.0, 0.5, 6e-7), ("mistral-7b-base-simpo", 2.0, 0.8, 3e-7),
])
def test_official_recipes_load_with_published_hyperparameters(name, beta, ratio, lr):
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml")
    args = recipe.training
    assert (args.beta, args.gamma_beta_ratio, args.learning_rate) == (beta, ratio, lr)
    assert args.lr_scheduler_type == "cosine" and args.warmup_steps == 0.1 and args.num_train_epochs == 1
    assert args.eval_strategy == "steps"  # written as the old key `evaluation_strategy`
    assert args.activation_checkpointing is True
    expected_lengths = (1024, 512) if name == "mistral-7b-base-simpo" else (2048, 1800)
    assert (args.max_length, args.max_prompt_length) == expected_lengths


def test_overrides_are_typed_and_win():
    recipe = load_recipe(REPO / "recipes/smollm2-135m-simpo.yaml", ["--beta", "4", "--max_steps=3", "--bf16", "false"])
    assert recipe.training.beta == 4 and recipe.training.max_steps == 3 and recipe.training.bf16 is False
    assert parse_overrides(["--dataset_mixer", "{a: 0.5}", "--do_eval"]) == {"dataset_mixer": {"a": 0.5}, "do_eval": True}


@pytest.mark.parametrize("values,message", [
    ({"betta": 3}, "unknown recipe key 'betta' in the recipe; did you mean 'beta'?"),
    ({"beta": 0}, "beta must be > 0, got 0"),
    ({"beta": -1.5}, "beta must be > 0, got -1.5"),
    ({"loss_type": "dpo"}, "loss_type must be one of sigmoid, hinge, got 'dpo'"),
    ({"max_length": 512, "max_prompt_length": 512}, r"max_prompt_length \(512\) must be smaller than max_length \(512\)"),
    ({"label_smoothing": 0.6}, r"label_smoothing must be in \[0, 0.5\)"),
    ({"truncation_mode": "middle"}, "truncation_mode must be one of keep_end, keep_start"),
    ({"dataset_mixer": {"x": 2.0}}, r"dataset_mixer\['x'\] must be a fraction in \(0, 1\]"),
    ({"evaluation_strategy": "steps", "eval_strategy": "no"}, "sets both 'evaluation_strategy' and 'eval_strategy', two names of one key"),
    ({"warmup_ratio": 3}, r"warmup_ratio must be a fraction in \[0, 1\)"),
    ({"lr_scheduler_type": "sideways"}, "sideways"),
])
def test_bad_recipes_fail_with_the_key_named(values, message):
    with pytest.raises(RecipeError, match=message):
        build_recipe({**BASE, **values})


def test_missing_required_keys():
    with pytest.raises(RecipeError, match="model_name_or_path is required"):
        build_recipe({"dataset_mixer": {"a": 1.0}})
    with pytest.raises(RecipeError, match="dataset_mixer is required"):
        build_recipe({"model_name_or_path": "m"})


def test_dry_run_prints_resolved_json_without_a_model(capsys):
    code = main(["train", str(REPO / "recipes/gemma-2-9b-it-simpo.yaml"), "--dry-run", "--beta", "7"])
    assert code == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["training"]["beta"] == 7
    assert resolved["model"]["model_name_or_path"] == "google/gemma-2-9b-it"
    assert resolved["data"]["dataset_mixer"] == {"princeton-nlp/gemma2-ultrafeedback-armorm": 1.0}


def test_cli_reports_unknown_key_before_loading(capsys):
    code = main(["train", str(REPO / "recipes/smollm2-135m-simpo.yaml"), "--learning_rat", "1e-5"])
    assert code == 2
    assert "unknown recipe key 'learning_rat' in the command line; did you mean 'learning_rate'?" in capsys.readouterr().err


def test_missing_recipe_file(capsys):
    assert main(["train", "nowhere.yaml", "--dry-run"]) == 2
    assert "recipe file nowhere.yaml does not exist" in capsys.readouterr().err
