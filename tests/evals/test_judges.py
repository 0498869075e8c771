"""The judges' shared conventions: the order the outputs are shown in, the mapping back to the model's
side, verdict labels, and `open_judge` with its errors."""

import pytest

from simpo.errors import RecipeError
from simpo.evals.judges import COUNTERS, canonical_verdict, model_preference, open_judge, shown_order


def test_shown_order_is_a_seeded_coin_independent_of_the_roles():
    orders = [shown_order(f"instruction {i}", "model says yes", "reference says no") for i in range(40)]
    firsts = sum(model_first for _, _, model_first in orders)
    assert 10 <= firsts <= 30  # both ways occur, about half each
    for output_1, output_2, model_first in orders:
        assert {output_1, output_2} == {"model says yes", "reference says no"}
        assert model_first == (output_1 == "model says yes")
    assert orders == [shown_order(f"instruction {i}", "model says yes", "reference says no") for i in range(40)]
    # With the roles swapped the judge sees the same prompt, and the model's side flips.
    for i, (output_1, output_2, model_first) in enumerate(orders):
        assert shown_order(f"instruction {i}", "reference says no", "model says yes") == (output_1, output_2, not model_first)


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
