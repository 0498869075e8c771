"""Recipe values converted by their key's declared type: what official recipes write converts to
what HfArgumentParser would give, and what does not convert names the key, value and type."""

from __future__ import annotations

import math

import pytest
from transformers.trainer_utils import IntervalStrategy

from simpo.config.recipe import build_recipe, load_recipe
from simpo.config.types import convert, describe
from simpo.errors import RecipeError

BASE = {"model_name_or_path": "m", "dataset_mixer": {"d": 1.0}}


@pytest.mark.parametrize("value,kind,expected", [
    ("1e-6", float, 1e-6), ("5.0e-7", float, 5e-7), (3, float, 3.0), ("100", int, 100), (2.0, int, 2), ("1e3", int, 1000),
    ("true", bool, True), ("No", bool, False), (False, IntervalStrategy | str, "no"), ("epoch", IntervalStrategy | str, "epoch"),
    ("no", str | bool, "no"), (None, float | None, None), ("0.5", float | None, 0.5), (["a", "b"], None | str | list[str], ["a", "b"]),
    ({"x": "0.5"}, dict[str, float], {"x": 0.5}), ([1, "2"], list[int], [1, 2]),
])
def test_values_convert_to_the_declared_type(value, kind, expected):
    converted = convert(value, kind, "key")
    assert (converted, type(converted)) == (expected, type(expected))


@pytest.mark.parametrize("value,kind,message", [
    ("abc", float, "must be a finite number, got 'abc'"), (math.nan, float, "must be a finite number, got nan"),
    (math.inf, float | None, "must be a finite number or none, got inf"), (2.5, int, "must be a whole number, got 2.5"),
    (True, int, "must be a whole number, got True"), ("maybe", bool, "must be true or false, got 'maybe'"),
    (5, str, "must be text, got 5"), ("sometimes", IntervalStrategy | str, "must be one of no, steps, epoch, got 'sometimes'"),
    ("train", list[str], "must be a list of strings, got 'train'"), ({"x": math.nan}, dict[str, float], "must be a mapping of finite numbers, got {'x': nan}"),
])
def test_values_that_do_not_convert_name_key_value_and_type(value, kind, message):
    with pytest.raises(RecipeError) as caught:
        convert(value, kind, "key")
    assert str(caught.value) == f"key {message}"


def test_describe_reads_as_a_user_would():
    assert [describe(kind) for kind in (int, float | None, list[int], IntervalStrategy | str)] == [
        "a whole number", "a finite number or none", "a list of whole numbers", "one of no, steps, epoch"]


def test_an_official_style_recipe_file_loads_with_typed_values(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: m\ndataset_mixer: {d: 1.0}\nlearning_rate: 1e-6\nsave_strategy: no\n"
                      "num_train_epochs: '2'\nwarmup_ratio: 1e-1\ndo_eval: 'true'\n")
    training = load_recipe(recipe, ["--max_steps", "1e2", "--adam_epsilon=1e-8"]).training
    assert (training.learning_rate, training.save_strategy, training.num_train_epochs, training.warmup_steps) == (1e-6, "no", 2.0, 0.1)
    assert (training.do_eval, training.max_steps, training.adam_epsilon) == (True, 100, 1e-8)


def test_an_alias_is_named_as_written():
    with pytest.raises(RecipeError, match="^warmup_ratio must be a finite number, got 'x'"):
        build_recipe({**BASE, "warmup_ratio": "x"})
