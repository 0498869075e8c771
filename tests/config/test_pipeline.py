"""Pipeline recipes: stage keys checked (and stage folders derived from run_dir) before any model loads."""

import pytest

from simpo.config.pipeline import load_pipeline
from simpo.errors import RecipeError


def test_stage_keys_are_checked_before_any_model_loads(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown key generate.temprature; did you mean generate.temperature\?"):
        load_pipeline(None, ["--model_name_or_path", "m", "--generate.temprature", "0.7"])
    pipeline = load_pipeline(None, ["--model_name_or_path", "m", "--run_dir", str(tmp_path), "--generate.prompts", "p.jsonl"])
    assert pipeline.train.data.dataset_mixer == {str(tmp_path / "pairs"): 1.0}
    assert pipeline.train.training.output_dir == str(tmp_path / "model")
    assert pipeline.generate.seeds == [13, 21, 42, 79, 100] and pipeline.generate.temperature == 0.8
    with pytest.raises(RecipeError, match="repeated seed"):
        load_pipeline(None, ["--model_name_or_path", "m", "--generate.prompts", "p", "--generate.seeds", "[1,1]"]).generate.validate()
    with pytest.raises(RecipeError, match="annotate.rewards is required"):
        load_pipeline(None, ["--model_name_or_path", "m"]).annotate.validate()
