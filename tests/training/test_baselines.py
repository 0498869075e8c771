"""The paper's baselines in the trainer: every method trains the tiny random Llama to a training
reward accuracy of 1.0."""

import pytest
from helpers import recipe_values, train_tiny, write_jsonl

from simpo.config.recipe import build_recipe
from simpo.data.bundled import make_rows

pytestmark = pytest.mark.usefixtures("one_thread", "cache_in_tmp")


# Per method: recipe keys that separate the 8 pairs within 25 epochs (the loss's defaults otherwise).
# The NLL terms of CPO, ORPO (by a large lambda), RRHF and SLiC-HF are turned down: on this data
# they lift the rejected responses' shared tokens as much as the chosen ones', and RRHF's ranking
# term, zero once a pair is ordered, otherwise leaves pairs on the boundary.
METHODS = {
    "simpo": {"beta": 2.0, "gamma_beta_ratio": 0.3},
    "hinge": {"beta": 2.0, "gamma_beta_ratio": 0.3},
    "dpo": {"beta": 0.1},
    "dpo-live": {"loss_type": "dpo", "beta": 0.1, "precompute_ref_logps": False},
    "ipo": {"tau": 0.1},
    "cpo": {"beta": 0.1, "nll_weight": 0.01},
    "kto_pair": {"beta": 0.1},
    "orpo": {"orpo_lambda": 10.0},
    "rdpo": {"beta": 0.1, "rdpo_alpha": 0.01},
    "rrhf": {"nll_weight": 0.0, "learning_rate": 3e-2},
    "slic_hf": {"nll_weight": 0.01},
}
# The implicit reward of each reference-free method as a multiple of its log-probs (beta, lambda or 1).
REWARD_SCALE = {"simpo": 2.0, "hinge": 2.0, "cpo": 0.1, "orpo": 10.0, "rrhf": 1.0, "slic_hf": 1.0}
TRAINING = {"per_device_train_batch_size": 8, "num_train_epochs": 25, "learning_rate": 1e-2, "lr_scheduler_type": "linear"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_the_tiny_model_to_accuracy_one(method, tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    data = write_jsonl(tmp_path / "pairs" / "train.jsonl", make_rows(8, seed=11))
    keys = {"loss_type": method, **TRAINING, **METHODS[method]}
    logged = train_tiny(folder, build_recipe(recipe_values(folder, data.parent, tmp_path / "out", **keys)))
    assert logged[-1]["rewards/accuracies"] == 1.0
    assert logged[-1]["loss"] < logged[0]["loss"]
    last = logged[-1]
    assert last["rewards/margins"] == pytest.approx(last["rewards/chosen"] - last["rewards/rejected"], rel=1e-4, abs=1e-5)
    if method in REWARD_SCALE:  # without a reference the reward is a multiple of the logged log-probs
        for side in ("chosen", "rejected"):
            assert last[f"rewards/{side}"] == pytest.approx(REWARD_SCALE[method] * last[f"logps/{side}"], rel=1e-5)
