"""Loading a recipe's model: a folder that holds only a tokenizer (enough for `simpo inspect`) is
refused in one line when a model is needed."""

from __future__ import annotations

import pytest

from simpo.config.recipe import ModelConfig
from simpo.errors import RecipeError
from simpo.models.loading import load_model, load_tokenizer


def test_a_tokenizer_only_folder_loads_its_tokenizer_but_no_model(smollm2_tokenizer, tmp_path):
    smollm2_tokenizer.save_pretrained(tmp_path)
    config = ModelConfig(model_name_or_path=str(tmp_path))
    assert load_tokenizer(config).get_vocab() == smollm2_tokenizer.get_vocab()
    with pytest.raises(RecipeError, match=r"holds a tokenizer but no model \(no config.json\)"):
        load_model(config)
