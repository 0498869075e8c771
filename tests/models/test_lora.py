"""LoRA (`use_peft: true`): only the adapters train, r * (in + out) weights per targeted linear layer,
`disable_dropout` zeroes LoRA's dropout too, and the reference of a reference loss is the base model
(adapters disabled), precomputed or live, equal to the base loaded on its own."""

import pytest
import torch
from helpers import plain_response_stats, recipe_values, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.config.recipe import build_recipe
from simpo.data.bundled import make_rows
from simpo.data.dataset import build_pair_datasets
from simpo.data.encode import PairEncoder
from simpo.errors import RecipeError
from simpo.models.lora import add_adapters, check_target_modules
from simpo.training.trainer import SimPOTrainer

pytestmark = pytest.mark.usefixtures("one_thread", "cache_in_tmp")

# The tiny Llama (conftest): hidden 32, intermediate 64, 4 heads of 8 dimensions, 2 key/value heads, 2 layers.
HIDDEN, INTERMEDIATE, KV, LAYERS = 32, 64, 2 * 8, 2
SHAPES = {  # (in, out) of each linear layer of a decoder layer
    "q_proj": (HIDDEN, HIDDEN), "k_proj": (HIDDEN, KV), "v_proj": (HIDDEN, KV), "o_proj": (HIDDEN, HIDDEN),
    "gate_proj": (HIDDEN, INTERMEDIATE), "up_proj": (HIDDEN, INTERMEDIATE), "down_proj": (INTERMEDIATE, HIDDEN),
}


def lora_weights(r: int, names) -> int:
    """lora_A (r x in) and lora_B (out x r) of each named layer, in every decoder layer."""
    return LAYERS * sum(r * (SHAPES[name][0] + SHAPES[name][1]) for name in names)


def setup(folder, tmp_path, rows: int = 8, **keys):
    data = write_jsonl(tmp_path / "pairs.jsonl", make_rows(rows, seed=5))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    recipe = build_recipe(recipe_values(folder, data, tmp_path / "out", use_peft=True, **keys))
    train, _ = build_pair_datasets(recipe.data, PairEncoder(tokenizer, 128, 64))
    return recipe, tokenizer, train


def test_only_the_adapters_train_r_times_in_plus_out_each(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    recipe, tokenizer, train = setup(folder, tmp_path, lora_r=4, lora_alpha=8)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    initial = {name: weight.detach().clone() for name, weight in model.named_parameters()}
    trainer = SimPOTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=train)
    adapted = trainer.model
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == lora_weights(4, SHAPES)  # unset: every linear but lm_head
    # disable_dropout (true by default) zeroes every dropout, LoRA's own too (lora_dropout: 0.05 by default).
    dropouts = [module for name, module in adapted.named_modules() if name.endswith("lora_dropout.default")]
    assert len(dropouts) == len(SHAPES) * LAYERS and {module.p for module in dropouts} == {0.0}
    adapters = {name: weight.detach().clone() for name, weight in adapted.named_parameters() if "lora_" in name}
    assert len(adapters) == 2 * len(SHAPES) * LAYERS and all(not w.any() for n, w in adapters.items() if "lora_B" in n)

    trainer.train()
    base = {name.replace(".base_layer", ""): weight for name, weight in adapted.get_base_model().named_parameters() if "lora_" not in name}
    assert base.keys() == initial.keys()
    assert [name for name, weight in base.items() if not torch.equal(weight, initial[name])] == []  # bitwise unchanged
    changed = [name for name, weight in adapted.named_parameters() if "lora_" in name and not torch.equal(weight, adapters[name])]
    assert any("lora_A" in name for name in changed) and any("lora_B" in name for name in changed)


def test_named_targets_and_a_name_that_matches_nothing(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    recipe, _, _ = setup(folder, tmp_path, rows=2, lora_r=2, lora_target_modules=["q_proj", "v_proj"])
    model = add_adapters(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), recipe.training)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == lora_weights(2, ["q_proj", "v_proj"])
    with pytest.raises(RecipeError) as error:
        check_target_modules(AutoModelForCausalLM.from_pretrained(folder), ["q_proj", "qkv_proj"])
    assert str(error.value) == ("lora_target_modules: 'qkv_proj' matches no linear layer of the model; its linear layers are "
                                "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj")


@pytest.mark.parametrize("precompute", [True, False], ids=["precomputed", "live"])
def test_the_reference_is_the_base_model_with_the_adapters_disabled(precompute, tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    recipe, tokenizer, train = setup(folder, tmp_path, rows=4, loss_type="dpo", precompute_ref_logps=precompute, lora_dropout=0.0)
    policy = add_adapters(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), recipe.training)
    torch.manual_seed(1)
    for name, weight in policy.named_parameters():  # trained-looking adapters: the policy is no longer its base
        if "lora_B" in name:
            weight.data.normal_(0, 0.1)
    trainer = SimPOTrainer(model=policy, args=recipe.training, processing_class=tokenizer, train_dataset=train)
    assert trainer.ref_model is None  # no second copy of the model

    rows = make_rows(4, seed=5)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()  # loaded on its own
    expected = {side: (stats["average"] * stats["tokens"]).float() for side in ("chosen", "rejected")
                for stats in [plain_response_stats(base, tokenizer, rows, side)]}
    adapted = plain_response_stats(policy, tokenizer, rows, "chosen")
    assert not torch.allclose((adapted["average"] * adapted["tokens"]).float(), expected["chosen"], atol=1e-2)
    if precompute:
        chosen, rejected = (torch.tensor(trainer.train_dataset[column]) for column in ("ref_chosen_logps", "ref_rejected_logps"))
    else:
        batch = trainer.data_collator([train[i] for i in range(4)])
        assert "ref_logps" not in batch
        chosen, rejected = trainer._live_reference_logps(trainer.model, batch).split(4)
    order = [row - 1 for row in train["row"]]  # the split's rows, counted from 1, in its order
    torch.testing.assert_close(chosen, expected["chosen"][order], atol=2e-4, rtol=0)
    torch.testing.assert_close(rejected, expected["rejected"][order], atol=2e-4, rtol=0)
    # The adapters are back on, trainable, after the reference pass.
    assert all(weight.requires_grad for name, weight in policy.named_parameters() if "lora_" in name)
    assert plain_response_stats(policy, tokenizer, rows, "chosen")["average"].equal(adapted["average"])
