"""A model's parameter count from its config.json, against `sum(p.numel())` of the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from simpo.errors import RecipeError
from simpo.models.shape import SHIPPED, ModelShape, find_model_config, read_config


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied head is one parameter, counted once


@pytest.mark.parametrize("kind", ["llama", "gemma2"])
def test_count_of_the_tiny_test_models_equals_their_numel(tiny_model_dir, kind):
    from transformers import AutoModelForCausalLM

    folder = tiny_model_dir(kind)
    shape = ModelShape.from_config(read_config(folder / "config.json"))
    assert shape.parameters() == numel(AutoModelForCausalLM.from_pretrained(folder))


TINY = dict(vocab_size=101, hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2)


@pytest.mark.parametrize("model_type, extra", [
    ("llama", {"attention_bias": True, "mlp_bias": True}),  # biases on q, k, v, o and on the MLP
    ("llama", {"head_dim": 16, "tie_word_embeddings": True}),  # a head size that is not hidden / heads
    ("mistral", {}),
    ("qwen2", {}),  # q, k and v always have biases
    ("gemma", {"head_dim": 12}),
    ("gemma2", {"head_dim": 12, "tie_word_embeddings": False}),
])
def test_count_equals_numel_for_every_known_layout(model_type, extra):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, **TINY, **extra)
    shape = ModelShape.from_config(config.to_dict())
    assert shape.parameters() == numel(AutoModelForCausalLM.from_config(config))


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.json")), ids=lambda path: path.stem)
def test_shipped_configs_count_as_transformers_builds_them(path):
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):  # the 7-9B models' shapes, no memory
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(path)))
    assert ModelShape.from_config(read_config(path)).parameters() == numel(model)


def test_known_totals_of_the_official_models():
    counts = {path.stem: ModelShape.from_config(read_config(path)).parameters() for path in SHIPPED.glob("*.json")}
    assert counts["google--gemma-2-9b-it"] == 9_241_705_984
    assert counts["meta-llama--Meta-Llama-3-8B-Instruct"] == 8_030_261_248
    assert counts["mistralai--Mistral-7B-Instruct-v0.2"] == 7_241_732_096


def test_parameter_lines_show_the_sum():
    shape = ModelShape.from_config(read_config(SHIPPED / "meta-llama--Meta-Llama-3-8B-Instruct.json"))
    lines = shape.parameter_lines()
    assert lines[0] == "embeddings     V x h = 128,256 x 4,096 = 525,336,576"
    assert lines[2] == "MLP            3 x h x i = 3 x 4,096 x 14,336 = 176,160,768"
    assert lines[4] == "layers         32 x 218,112,000 = 6,979,584,000"
    assert lines[-1] == "parameters     8,030,261,248"
    assert 525_336_576 + 6_979_584_000 + 4_096 + 525_336_576 == 8_030_261_248


def test_unknown_layout_is_refused_by_name():
    with pytest.raises(RecipeError, match="not model_type 'gpt2'"):
        ModelShape.from_config({"model_type": "gpt2", "n_embd": 8})


def test_missing_dimension_is_named():
    with pytest.raises(RecipeError, match="no num_attention_heads"):
        ModelShape.from_config({"model_type": "llama", "hidden_size": 8})


def _hub_cache(root: Path, name: str, config: dict) -> None:
    """The hub cache's layout for one file of `name` at `main`."""
    repo = root / f"models--{name.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps(config))


def test_config_found_in_the_hub_cache_then_the_shipped_copies(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    _hub_cache(tmp_path, "someone/tiny", {"model_type": "llama", **TINY})
    path, source = find_model_config("someone/tiny")
    assert path == tmp_path / "models--someone--tiny" / "snapshots" / "abc123" / "config.json"
    assert source == "someone/tiny from the hub cache"
    path, source = find_model_config("google/gemma-2-9b-it")
    assert path == SHIPPED / "google--gemma-2-9b-it.json" and "shipped" in source
    with pytest.raises(RecipeError, match="no config.json in the hub cache and no copy shipped with simpo; .* --config"):
        find_model_config("someone/else")


def test_a_folder_without_config_is_named(tmp_path):
    with pytest.raises(RecipeError, match=f"the folder {tmp_path} has no config.json"):
        find_model_config(str(tmp_path))
