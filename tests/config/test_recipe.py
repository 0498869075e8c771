"""Recipes: loading, overrides, validation errors (a pipeline recipe's keys named too), and the
CLI's --dry-run and errors on a recipe."""

import json

import pytest
from helpers import REPO

from simpo.cli import main
from simpo.config.recipe import build_recipe, load_recipe, parse_overrides
from simpo.errors import RecipeError

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
    assert args.tokenization == "official"


@pytest.mark.parametrize("name,lr", [("llama-3-8b-instruct-dpo", 7e-7), ("mistral-7b-instruct-dpo", 5e-7), ("gemma-2-9b-it-dpo", 5e-7)])
def test_official_dpo_baselines_load(name, lr):
    args = load_recipe(REPO / "recipes" / f"{name}.yaml").training
    assert (args.loss_type, args.beta, args.learning_rate) == ("dpo", 0.01, lr)
    assert args.precompute_ref_logps is True and args.needs_reference
    assert args.gamma_beta_ratio is None and args.tau is None  # SimPO's and IPO's keys do not apply
    assert args.tokenization == "official"


@pytest.mark.parametrize("name", ["smollm2-135m-simpo", "smollm2-135m-pipeline"])
def test_cpu_recipes_keep_the_template_rule(name):
    from simpo.config.recipe import read_recipe_file

    assert "tokenization" not in read_recipe_file(REPO / "recipes" / f"{name}.yaml")


@pytest.mark.parametrize("loss_type,defaults", [
    ("simpo", {"beta": 2.0, "gamma_beta_ratio": 0.25, "label_smoothing": 0.0, "sft_weight": 0.0}),
    ("hinge", {"beta": 2.0, "gamma_beta_ratio": 0.25, "sft_weight": 0.0, "label_smoothing": None}),
    ("dpo", {"beta": 0.1, "gamma_beta_ratio": None}),
    ("ipo", {"tau": 0.1, "beta": None}),
    ("cpo", {"beta": 0.1, "nll_weight": 1.0}),
    ("kto_pair", {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0}),
    ("orpo", {"orpo_lambda": 0.1, "beta": None}),
    ("rdpo", {"beta": 0.1, "rdpo_alpha": 0.05}),
    ("rrhf", {"nll_weight": 1.0, "beta": None}),
    ("slic_hf", {"slic_delta": 1.0, "nll_weight": 1.0, "beta": None}),
])
def test_loss_defaults_depend_on_the_loss(loss_type, defaults):
    args = build_recipe({**BASE, "loss_type": loss_type}).training
    assert {key: getattr(args, key) for key in defaults} == defaults


def test_explicit_loss_keys_win_over_the_defaults():
    args = build_recipe({**BASE, "loss_type": "slic_hf", "slic_delta": 2, "nll_weight": 0.5}).training
    assert (args.slic_delta, args.nll_weight) == (2, 0.5)


def test_overrides_are_typed_and_win():
    recipe = load_recipe(REPO / "recipes/smollm2-135m-simpo.yaml", ["--beta", "4", "--max_steps=3", "--bf16", "false"])
    assert recipe.training.beta == 4 and recipe.training.max_steps == 3 and recipe.training.bf16 is False
    assert parse_overrides(["--dataset_mixer", "{a: 0.5}", "--do_eval"]) == {"dataset_mixer": {"a": 0.5}, "do_eval": True}


@pytest.mark.parametrize("values,message", [
    ({"betta": 3}, "unknown recipe key 'betta' in the recipe; did you mean 'beta'?"),
    ({"beta": 0}, "beta must be > 0, got 0"),
    ({"beta": -1.5}, "beta must be > 0, got -1.5"),
    ({"loss_type": "ppo"}, "loss_type must be one of simpo, sigmoid, hinge, dpo, ipo, cpo, kto_pair, orpo, rdpo, rrhf, slic_hf, got 'ppo'"),
    ({"loss_type": "dpo", "gamma_beta_ratio": 0.5}, "gamma_beta_ratio does not apply to loss_type 'dpo' \\(its keys: beta, ref_model_name_or_path, precompute_ref_logps\\)"),
    ({"tau": 0.1}, "tau does not apply to loss_type 'simpo'"),
    ({"loss_type": "ipo", "beta": 0.1}, "beta does not apply to loss_type 'ipo' \\(its keys: tau, "),
    ({"loss_type": "hinge", "label_smoothing": 0.1}, "label_smoothing does not apply to loss_type 'hinge'"),
    ({"loss_type": "orpo", "ref_model_name_or_path": "m"}, "ref_model_name_or_path does not apply to loss_type 'orpo'"),
    ({"precompute_ref_logps": False}, "precompute_ref_logps does not apply to loss_type 'simpo'"),
    ({"loss_type": "cpo", "nll_weight": -1}, "nll_weight must be >= 0, got -1"),
    ({"loss_type": "ipo", "tau": 0}, "tau must be > 0, got 0"),
    ({"loss_type": "dpo", "precompute_ref_logps": "maybe"}, "precompute_ref_logps must be true or false, got 'maybe'"),
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


def test_dry_run_shows_the_loss_keys_of_the_chosen_loss(capsys):
    code = main(["train", str(REPO / "recipes/mistral-7b-instruct-dpo.yaml"), "--dry-run", "--loss_type", "rdpo", "--rdpo_alpha", "0.5"])
    assert code == 0
    training = json.loads(capsys.readouterr().out)["training"]
    assert (training["loss_type"], training["beta"], training["rdpo_alpha"], training["precompute_ref_logps"]) == ("rdpo", 0.01, 0.5, True)
    assert training["gamma_beta_ratio"] is None and training["tau"] is None


def test_cli_reports_a_key_of_another_loss_before_loading(capsys):
    code = main(["train", str(REPO / "recipes/gemma-2-9b-it-simpo.yaml"), "--loss_type", "dpo"])
    assert code == 2
    assert "gamma_beta_ratio does not apply to loss_type 'dpo'" in capsys.readouterr().err


def test_cli_reports_unknown_key_before_loading(capsys):
    code = main(["train", str(REPO / "recipes/smollm2-135m-simpo.yaml"), "--learning_rat", "1e-5"])
    assert code == 2
    assert "unknown recipe key 'learning_rat' in the command line; did you mean 'learning_rate'?" in capsys.readouterr().err


def test_missing_recipe_file(capsys):
    assert main(["train", "nowhere.yaml", "--dry-run"]) == 2
    assert "recipe file nowhere.yaml does not exist" in capsys.readouterr().err


def test_simpo_train_points_a_pipeline_recipe_to_simpo_pipeline(capsys):
    assert main(["train", str(REPO / "recipes" / "smollm2-135m-pipeline.yaml"), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "'run_dir' in" in error and "belongs to a pipeline recipe: run it with `simpo pipeline`" in error
