"""The judges' shared conventions: the order the outputs are shown in, the mapping back to the model's
side, verdict labels, and `open_judge` with its errors."""

import pytest

from simpo.errors import RecipeError
from simpo.evals.judges import COUNTERS, canonical_verdict, model_preference, open_judge, shown_order


def test_shown_order_is_alpaca_evals_on_the_805_instructions(alpaca_eval_package):
    # The official annotator, built from its own config (seed, switch column, seeding column), switches
    # output_1 (the reference) and output_2 (the model's output) exactly where shown_order shows the
    # model first.
    import pandas as pd

    from simpo.evals.benchmarks import alpaca_eval

    _, items = alpaca_eval("offline")
    annotator = alpaca_eval_package.annotators.PairwiseAnnotator(annotators_config="weighted_alpaca_eval_gpt4_turbo", caching_path=None)
    [processor] = annotator.annotators["weighted_alpaca_eval_gpt4_turbo"].processors
    assert isinstance(processor, alpaca_eval_package.processors.RandomSwitchTwoColumnsProcessor)
    frame = pd.DataFrame({"instruction": [item["instruction"] for item in items], "output_1": [item["reference"] for item in items],
                          "output_2": [f"the model's output {i}" for i in range(len(items))]})
    shown = processor.preprocess(frame)
    ours = [shown_order(item["instruction"], f"the model's output {i}", item["reference"]) for i, item in enumerate(items)]
    assert len(ours) == 805 and 350 <= sum(model_first for _, _, model_first in ours) <= 455  # both ways, about half each
    assert [model_first for _, _, model_first in ours] == shown["is_switched_outputs"].tolist()
    assert [(output_1, output_2) for output_1, output_2, _ in ours] == list(zip(shown["output_1"], shown["output_2"]))


def test_shown_order_depends_on_the_instruction_alone():
    for i in range(20):
        instruction = f"instruction {i}"
        output_1, output_2, model_first = shown_order(instruction, "model says yes", "reference says no")
        assert (output_1, output_2) == (("model says yes", "reference says no") if model_first else ("reference says no", "model says yes"))
        # Other texts, or the roles swapped: the model's output is still shown in the same place.
        assert shown_order(instruction, "other", "texts")[2] == model_first
        assert shown_order(instruction, "reference says no", "model says yes") == (output_2, output_1, model_first)


def test_model_preference_maps_the_second_outputs_share_to_the_models_side():
    assert model_preference(0.75, model_first=False) == 1.75
    assert model_preference(0.75, model_first=True) == 1.25
    assert model_preference(0.0, model_first=True) == 2.0
    assert model_preference(1.0, model_first=False) == 2.0


@pytest.mark.parametrize("label, verdict", [("A>>B", "A>>B"), ("b>a", "B>A"), ("A<<B", "B>>A"), ("B<A", "A>B"),
                                            ("B=A", "A=B"), ("A", None), ("A>B>A", None), (None, None)])
def test_canonical_verdict(label, verdict):
    assert canonical_verdict(label) == verdict


@pytest.mark.parametrize("spec", ["gpt-4", "openai:", "azure:gpt-4", "local: ", "", "reward"])
def test_open_judge_refuses_other_specs(spec):
    with pytest.raises(RecipeError, match="is not a judge: write openai:MODEL .*local:MODEL .*reward:MODEL"):
        open_judge(spec)


def test_open_judge_openai_needs_a_key_for_the_openai_endpoint(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RecipeError, match="judge openai:gpt-4-1106-preview needs an API key: set OPENAI_API_KEY"):
        open_judge("openai:gpt-4-1106-preview")
    judge = open_judge("openai:my-model", base_url="http://127.0.0.1:9/v1/")
    assert (judge.name, judge.base_url, judge.counters) == ("openai:my-model", "http://127.0.0.1:9/v1", dict.fromkeys(COUNTERS, 0))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert open_judge("openai:gpt-4-1106-preview").api_key == "sk-test"


def test_open_judge_settings_errors():
    with pytest.raises(RecipeError, match="judge batch_size 0 must be a whole number of at least 1"):
        open_judge("local:smollm2-135m-instruct", batch_size=0)
    with pytest.raises(RecipeError, match="judge base_url is for openai:MODEL judges only"):
        open_judge("reward:some/model", base_url="http://127.0.0.1:9/v1")
