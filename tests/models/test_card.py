"""The model card's text from given facts: the model-index mirrors the results, the bundled alias
names the model it came from, defaults are marked as such, citations follow the benchmarks shown."""

import yaml

from simpo.models.card import CardFacts, hyperparameter_rows, model_index, render_card

RESULT = {
    "benchmark": "arena_hard", "name": "mine", "model": "runs/a/model", "dataset": "Arena-Hard v2.0 (first 10 questions)",
    "n": 10, "total": 500, "judge": "local:judge", "comparable": False,
    "metrics": {"score": 31.5, "ci_lower": 29.0, "ci_upper": 34.25, "length": 412.0}, "length_unit": "tokens (judge's tokenizer)",
    "notes": [], "seconds": {"generate": 1.0}, "settings": {},
}


def facts(**changes) -> CardFacts:
    values = dict(
        name="my-run", model_path="runs/a/model", recipe={"model_name_or_path": "smollm2-135m-instruct", "beta": 10},
        log_history=[], stop_tokens=[("<|im_end|>", 2)],
        datasets=[{"source": "princeton-nlp/gemma2-ultrafeedback-armorm", "fraction": 1.0, "hub": True, "pairs": None}],
        base_license="apache-2.0", eval_folder="runs/a/benchmarks",
    )
    return CardFacts(**{**values, **changes})


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_model_index_has_one_metric_per_number_of_each_result():
    index = model_index("my-run", {"arena_hard": RESULT})
    assert index[0]["name"] == "my-run"
    (result,) = index[0]["results"]
    assert result["task"] == {"type": "text-generation"}
    assert result["dataset"] == {"name": "Arena-Hard v2.0 (first 10 questions)", "type": "arena_hard"}
    assert {metric["type"]: metric["value"] for metric in result["metrics"]} == RESULT["metrics"]
    assert all(metric["verified"] is False for metric in result["metrics"])
    assert model_index("my-run", {}) == []


def test_the_bundled_alias_names_its_origin_and_hub_datasets_are_listed():
    text = render_card(facts(results={"mine": {"arena_hard": RESULT}}, own_results={"arena_hard": RESULT}))
    meta = front_matter(text)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["princeton-nlp/gemma2-ultrafeedback-armorm"]
    assert meta["tags"] == ["simpo", "preference-optimization"]
    assert "(the bundled alias `smollm2-135m-instruct` of `simpo`)" in text
    assert "@article{li2024arenahard," in text and "arXiv:2406.11939" in text  # Arena-Hard shown, so cited
    assert "arXiv:2405.14734" in text and "arXiv:2404.04475" not in text  # no AlpacaEval result: not cited


def test_an_unknown_license_is_other_with_a_warning_and_no_results_say_how_to_make_them():
    text = render_card(facts(base_license=None, recipe={"model_name_or_path": "/models/base", "loss_type": "dpo"}))
    meta = front_matter(text)
    assert meta["license"] == "other" and meta["base_model"] == "/models/base" and "model-index" not in meta
    assert meta["tags"] == ["simpo", "preference-optimization", "dpo"]
    assert "check the base model's license" in text
    assert "with DPO by `simpo`, one of the baselines of the SimPO paper" in text
    assert "No evaluation results were found in `runs/a/benchmarks`" in text and "simpo eval runs/a/model --output runs/a/benchmarks\n" in text


def test_hyperparameters_take_the_recipe_then_the_resolved_defaults():
    recipe = {"loss_type": "simpo", "beta": 10, "learning_rate": 8e-7, "warmup_steps": 0.1}
    run_info = {"processes": 8, "hyperparameters": {"loss_type": "simpo", "beta": 10.0, "gamma_beta_ratio": 0.25, "learning_rate": 8e-7,
                                                    "warmup_steps": 0.1, "max_steps": -1, "per_device_train_batch_size": 2,
                                                    "gradient_accumulation_steps": 8, "seed": 42}}
    assert hyperparameter_rows(recipe, run_info) == [
        ("loss_type", "simpo"), ("beta", "10"), ("gamma_beta_ratio", "0.25 (default)"), ("learning_rate", "8e-07"),
        ("warmup_steps", "0.1 (a fraction of the steps: warmup_ratio)"), ("per_device_train_batch_size", "2 (default)"),
        ("gradient_accumulation_steps", "8 (default)"), ("seed", "42 (default)"),
        ("global batch (pairs per optimizer step)", "128 (8 processes)"),
    ]
    # A run without run_info.json: the recipe's keys and the loss's defaults.
    assert hyperparameter_rows({"beta": 2.5, "seed": 1}, {}) == [
        ("loss_type", "simpo (default)"), ("beta", "2.5"), ("gamma_beta_ratio", "0.25 (default)"), ("label_smoothing", "0 (default)"),
        ("sft_weight", "0 (default)"), ("seed", "1"),
    ]
