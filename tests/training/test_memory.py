"""The memory plan's arithmetic: bytes per parameter by engine and precision, what sharding divides,
what checkpointing keeps, the head's chunk, the reference, the peak and the verdict."""

from __future__ import annotations

from dataclasses import replace

import pytest

from simpo.errors import RecipeError
from simpo.models.shape import ModelShape
from simpo.training.memory import GIB, RUNTIME_GIB, Setup, layer_bytes, optimizer_state, plan_memory

# Gemma-2-9B's dimensions (9,241,705,984 parameters, divisible by 8) and Llama-3-8B's.
GEMMA = ModelShape("gemma2", vocab=256000, hidden=3584, intermediate=14336, layers=42, heads=16, kv_heads=8, head_dim=256, tied=True,
                   logit_softcap=30.0, attention_softcap=50.0, silu=False)
LLAMA = ModelShape("llama", vocab=128256, hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, head_dim=128, tied=False)
OFFICIAL = Setup(gpus=8, gpu_memory_gib=80, sharding="zero3", weight_dtype="float32", mixed=True, optim="adamw_torch", pairs=2,
                 max_length=2048, checkpointing=True, chunk=256, attention="eager", reference="none", accumulation=16)


def states(shape, setup) -> dict[str, int]:
    plan = plan_memory(shape, setup)
    return {term.name: term.bytes for term in plan.states + ([plan.built] if plan.built else [])}


def test_zero3_over_8_gpus_divides_weights_gradients_and_optimizer_states_by_8():
    one, eight = states(GEMMA, replace(OFFICIAL, gpus=1)), states(GEMMA, OFFICIAL)
    p = GEMMA.parameters()
    assert p == 9_241_705_984
    for name, per_parameter in (("weights", 2), ("gradients", 2), ("fp32 master weights", 4), ("optimizer", 8)):
        assert one[name] == p * per_parameter
        assert eight[name] * 8 == one[name]
    assert eight["gathered while computing"] == one["gathered while computing"]  # whole modules, whatever the count


@pytest.mark.parametrize("sharding, divided", [
    ("zero0", set()),
    ("zero1", {"fp32 master weights", "optimizer"}),
    ("zero2", {"fp32 master weights", "optimizer", "gradients"}),
    ("zero3", {"fp32 master weights", "optimizer", "gradients", "weights"}),
])
def test_each_zero_stage_divides_its_own_states(sharding, divided):
    one, four = states(LLAMA, replace(OFFICIAL, sharding=sharding, gpus=1)), states(LLAMA, replace(OFFICIAL, sharding=sharding, gpus=4))
    for name in ("weights", "gradients", "fp32 master weights", "optimizer"):
        assert four[name] == (one[name] // 4 if name in divided else one[name]), name


def test_bytes_per_parameter_by_engine_and_precision():
    p = LLAMA.parameters()

    def per_parameter(**changes):
        values = states(LLAMA, replace(OFFICIAL, gpus=1, **changes))
        return {name: value // p for name, value in values.items() if name in ("weights", "gradients", "fp32 master weights", "optimizer")}

    # DeepSpeed under bf16: 16-bit weights and gradients, fp32 master copy and moments
    assert per_parameter() == {"weights": 2, "gradients": 2, "fp32 master weights": 4, "optimizer": 8}
    # one device, fp32 weights (torch_dtype unset) under bf16 autocast: no master copy, fp32 moments
    assert per_parameter(sharding="none") == {"weights": 4, "gradients": 4, "optimizer": 8}
    # bf16 weights: torch's AdamW keeps its moments in bf16 too, and there is no fp32 copy at all
    assert per_parameter(sharding="none", weight_dtype="bfloat16") == {"weights": 2, "gradients": 2, "optimizer": 4}
    # FSDP keeps the weights as loaded, sharded: they are the master copy
    assert per_parameter(sharding="fsdp") == {"weights": 4, "gradients": 4, "optimizer": 8}
    assert per_parameter(sharding="none", optim="adamw_bnb_8bit") == {"weights": 4, "gradients": 4, "optimizer": 2}


def test_ddp_keeps_a_second_copy_of_the_gradients_in_its_buckets():
    ddp = states(LLAMA, replace(OFFICIAL, sharding="none", gpus=4))
    assert ddp["DDP gradient buckets"] == ddp["gradients"] == LLAMA.parameters() * 4
    assert "DDP gradient buckets" not in states(LLAMA, replace(OFFICIAL, sharding="none", gpus=1))


def test_checkpointing_keeps_each_layers_input_and_one_layer():
    plan = plan_memory(LLAMA, replace(OFFICIAL, attention="flash_attention_2"))
    kept = {term.name: term.bytes for term in plan.activations}
    tokens = 2 * 2 * 2048
    assert kept["layer inputs (checkpoints)"] == 32 * tokens * 4096 * 2
    one, _ = layer_bytes(LLAMA, plan.setup, tokens, recomputed=True)
    assert kept["one layer recomputed"] == one
    every = {term.name: term.bytes for term in plan.other_activations}
    assert every["every layer"] == 32 * layer_bytes(LLAMA, plan.setup, tokens)[0]


def test_llama_layer_per_token_written_out():
    setup = replace(OFFICIAL, attention="flash_attention_2")
    total, text = layer_bytes(LLAMA, setup, 1)
    # 2 norms (input, 2 B, and its reciprocal RMS, 4 B) + q, k, v, output + log-sum-exp + o_proj's input + the MLP's gate and up
    assert total == 2 * (4096 * 2 + 4) + (2 * 4096 + 2 * 1024) * 2 + 32 * 4 + 4096 * 2 + 2 * 14336 * 2
    assert text.endswith(f"= {total:,} B)")


def test_eager_attention_keeps_its_probabilities_per_sequence():
    setup = replace(OFFICIAL, gpus=1)
    total, _ = layer_bytes(GEMMA, setup, 8192)
    flash, _ = layer_bytes(GEMMA, replace(setup, attention="flash_attention_2"), 8192)
    # softmax in fp32, its bf16 cast and the soft-cap's tanh: 8 B per element, 16 heads, 4 sequences of 2,048
    square = 16 * 4 * 2048**2 * (4 + 2 + 2)
    assert total - square == 8192 * (4 * (8 * 3584 + 4) + 2 * 3584 * 2 + 3 * 4096 * 2 + 4096 * 2 + 4 * 14336 * 2)
    assert flash < total - square + 8192 * 4096 * 2


def test_the_head_holds_one_chunk_or_every_positions_logits():
    plan = plan_memory(GEMMA, OFFICIAL)
    head = next(term for term in plan.activations if term.name.startswith("log-prob head"))
    assert head.bytes == 256 * 256000 * (2 + 8 + 8)  # bf16 logits, their fp32 copy, log-softmax, the soft-cap's tanh and values
    full = next(term for term in plan_memory(GEMMA, replace(OFFICIAL, chunk=0)).activations if term.name.startswith("full logits"))
    assert full.bytes == 8192 * 256000 * (4 + 2 + 8)
    llama = next(term for term in plan_memory(LLAMA, replace(OFFICIAL, chunk=0)).activations if term.name.startswith("full logits"))
    assert llama.bytes == 8192 * 128256 * (4 + 8)


def test_a_live_reference_is_a_whole_copy_a_cached_one_nothing():
    live = states(LLAMA, replace(OFFICIAL, reference="live"))
    assert live["reference model (live)"] == LLAMA.parameters() * 4  # as loaded (fp32), not sharded
    assert states(LLAMA, replace(OFFICIAL, reference="cached"))["reference model"] == 0


def test_autocast_over_fp32_weights_keeps_bf16_copies_of_them():
    plan = plan_memory(LLAMA, replace(OFFICIAL, sharding="none", gpus=1))
    copies = next(term for term in plan.activations if term.name == "autocast's bf16 weight copies")
    # every layer's linear weights, and the head twice (the model's own head call and the chunked head)
    assert copies.bytes == (32 * (LLAMA.attention_parameters() + LLAMA.mlp_parameters()) + 2 * 128256 * 4096) * 2
    assert "autocast's bf16 weight copies" not in {term.name for term in plan_memory(LLAMA, OFFICIAL).activations}


def test_peak_is_held_plus_the_larger_of_backward_and_step():
    plan = plan_memory(GEMMA, replace(OFFICIAL, gpus=4))
    held = sum(term.bytes for term in plan.states) + int(RUNTIME_GIB * GIB)
    step = sum(term.bytes for term in plan.step)
    assert plan.built is None  # accumulated over 16 micro-batches: held throughout
    # the head's gradient is made whole (bf16, before its reduce-scatter) at the start of the backward pass
    assert plan.backward(plan.activations) == sum(term.bytes for term in plan.activations) + 256000 * 3584 * 2
    assert plan.total == held + max(plan.backward(plan.activations), step)
    assert step == 10**9 * 4 + 10**9 * 4  # foreach AdamW's sqrt and DeepSpeed's fp32 gradients, per 1e9 sub-group


def test_without_accumulation_the_gradients_are_made_as_activations_are_freed():
    plan = plan_memory(LLAMA, replace(OFFICIAL, sharding="none", gpus=1, accumulation=1))
    assert plan.built.name == "gradients"
    kept = sum(term.bytes for term in plan.activations)
    assert plan.backward(plan.activations) == max(kept + 128256 * 4096 * 4, LLAMA.parameters() * 4)
    tied = plan_memory(GEMMA, replace(plan.setup))  # at the end, a tied embedding's own gradient besides the head's
    assert tied.backward([]) == max(256000 * 3584 * 4, GEMMA.parameters() * 4 + 256000 * 3584 * 4)
    assert not [term for term in plan.step if term.bytes == 0] and plan.step[0].bytes == LLAMA.parameters() * 4  # foreach sqrt
    fused = plan_memory(LLAMA, replace(plan.setup, optim="adamw_torch_fused"))
    assert [term.bytes for term in fused.step] == [0]


def test_verdict():
    plan = plan_memory(GEMMA, OFFICIAL)
    at = plan.total / GIB
    assert plan_memory(GEMMA, replace(OFFICIAL, gpu_memory_gib=at / 0.89)).verdict().startswith("fits")
    assert plan_memory(GEMMA, replace(OFFICIAL, gpu_memory_gib=at / 0.95)).verdict().startswith("tight")
    assert plan_memory(GEMMA, replace(OFFICIAL, gpu_memory_gib=at * 0.99)).verdict().startswith("does not fit")


def test_optimizer_states_known_and_unknown():
    assert optimizer_state("adamw_torch")[:2] == (2, None)
    assert optimizer_state("paged_adamw_8bit")[:2] == (2, 1)
    assert optimizer_state("sgd")[0] == 0
    with pytest.raises(RecipeError, match="optim adagrad: simpo plan knows"):
        optimizer_state("adagrad")
