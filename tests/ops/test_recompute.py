"""`recompute_in_backward`: the same loss and gradients as the model's own MLPs and norms, with
fewer bytes kept for the backward pass."""

import copy

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

from simpo.ops import recompute
from simpo.ops.recompute import recompute_in_backward


def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2)
    return LlamaForCausalLM(config)


def loss_and_grads(model, ids, autocast=False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(ids, labels=ids).loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def saved_bytes(model, ids, monkeypatch) -> int:
    """Bytes of the tensors autograd keeps for the backward pass, parameters left out, each storage
    once (through `recompute`'s own saved-tensor hook where the model has it: the innermost hook
    packs)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def count(packed):
        if isinstance(packed, torch.Tensor) and packed.untyped_storage().data_ptr() not in params:
            seen[packed.untyped_storage().data_ptr()] = packed.untyped_storage().nbytes()
        return packed

    monkeypatch.setattr(recompute, "_pack", lambda t, pack=recompute._pack: count(pack(t)))
    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
        model(ids, labels=ids)  # the forward alone: what autograd keeps
    return sum(seen.values())


def test_llama_mlps_and_norms_changed_and_results_equal():
    model = tiny_llama()
    lean = copy.deepcopy(model)
    assert recompute_in_backward(lean) == 2 + 2 * 2 + 1  # MLPs, two norms a layer, the final norm
    assert recompute_in_backward(lean) == 0
    ids = torch.randint(0, 128, (2, 17))
    loss, grads = loss_and_grads(model, ids)
    lean_loss, lean_grads = loss_and_grads(lean, ids)
    assert lean_loss == loss
    for grad, lean_grad in zip(grads, lean_grads):
        assert torch.allclose(lean_grad, grad, rtol=1e-5, atol=1e-7)


def test_bf16_autocast_matches_to_bf16_precision():
    model = tiny_llama()
    lean = copy.deepcopy(model)
    recompute_in_backward(lean)
    ids = torch.randint(0, 128, (2, 17))
    loss, grads = loss_and_grads(model, ids, autocast=True)
    lean_loss, lean_grads = loss_and_grads(lean, ids, autocast=True)
    assert lean_loss == loss
    for grad, lean_grad in zip(grads, lean_grads):
        assert lean_grad.dtype == torch.float32
        assert (lean_grad - grad).abs().max() <= 2**-7 * grad.abs().max()


def test_fewer_bytes_kept_for_backward(monkeypatch):
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 64))
    before = saved_bytes(model, ids, monkeypatch)
    recompute_in_backward(model)
    after = saved_bytes(model, ids, monkeypatch)
    config, tokens, floats = model.config, 64, 4
    # per layer: the SiLU and the product (intermediate size), each norm's normalized input and its
    # output as the projections keep it (hidden size); the same of the final norm, read by the head
    dropped = config.num_hidden_layers * (2 * config.intermediate_size + 2 * 2 * config.hidden_size) + 2 * config.hidden_size
    assert before - after == dropped * tokens * floats


def test_activation_checkpointing_gives_the_same_gradients():
    model = tiny_llama()
    lean = copy.deepcopy(model)
    recompute_in_backward(lean)
    lean.activation_checkpointing_enable()
    lean.train()
    ids = torch.randint(0, 128, (2, 17))
    loss, grads = loss_and_grads(model, ids)
    lean_loss, lean_grads = loss_and_grads(lean, ids)
    assert torch.allclose(lean_loss, loss, rtol=1e-6, atol=0)
    for grad, lean_grad in zip(grads, lean_grads):
        assert torch.allclose(lean_grad, grad, rtol=1e-5, atol=1e-7)
    assert recompute._latest[0] is None


def test_no_grad_and_other_models_left_alone():
    model = tiny_llama()
    recompute_in_backward(model)
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, tiny_llama()(ids).logits)
    gemma = Gemma2ForCausalLM(Gemma2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=16))
    assert recompute_in_backward(gemma) == 0  # GELU MLPs and Gemma's (1 + weight) norms


@pytest.mark.parametrize("bias", [False, True])
def test_a_down_projection_with_a_bias_keeps_its_module(bias):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, mlp_bias=bias)
    model = LlamaForCausalLM(config)
    lean = copy.deepcopy(model)
    recompute_in_backward(lean)
    ids = torch.randint(0, 64, (1, 11))
    loss, grads = loss_and_grads(model, ids)
    lean_loss, lean_grads = loss_and_grads(lean, ids)
    assert lean_loss == loss
    for grad, lean_grad in zip(grads, lean_grads):
        assert torch.allclose(lean_grad, grad, rtol=1e-5, atol=1e-7)


def lora_llama(dropout: float = 0.0):
    """The tiny Llama with LoRA adapters (r 4) on every linear layer, their lora_B made non-zero."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear"))
    for name, weight in model.named_parameters():
        if "lora_B" in name:
            weight.data.normal_(0, 0.1)
    return model


def test_a_lora_down_projection_keeps_no_product(monkeypatch):
    model = lora_llama()
    lean = copy.deepcopy(model)
    assert recompute_in_backward(lean) == 2 + 2 * 2 + 1
    ids = torch.randint(0, 128, (2, 17))
    results = []
    for each in (model, lean):
        loss = each(ids, labels=ids).loss
        loss.backward()
        results.append((loss.detach(), [p.grad for p in each.parameters() if p.requires_grad]))
    (loss, grads), (lean_loss, lean_grads) = results
    assert torch.allclose(lean_loss, loss, rtol=1e-6, atol=0)
    assert len(grads) == 2 * 7 * 2  # lora_A and lora_B of 7 linear layers in 2 layers: only the adapters train
    for grad, lean_grad in zip(grads, lean_grads):
        assert torch.allclose(lean_grad, grad, rtol=1e-5, atol=1e-7)
    # The product silu(gate) * up, one [tokens, intermediate] per layer, is what lora_A's gradient
    # would keep without the fused path.
    ids = torch.randint(0, 128, (1, 64))
    fused = saved_bytes(lean, ids, monkeypatch)
    monkeypatch.setattr(recompute, "_plain_lora", lambda down: None)
    assert saved_bytes(lean, ids, monkeypatch) - fused == 2 * 96 * 64 * 4
