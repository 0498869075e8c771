"""Chunked response log-probs equal the full-logits path; packed rows equal padded batches."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.attention import use_per_sequence_attention
from simpo.data.bundled import make_rows
from simpo.data.collate import IGNORE, PairCollator
from simpo.data.encode import PairEncoder
from simpo.data.rows import read_pair
from simpo.logprobs import response_logps


def load(folder, untie=False):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if untie:  # a separate output head, as Llama-3-8B and Mistral have
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() + 0.01)
    return model


def features(folder, count=4, seed=9):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = PairEncoder(tokenizer, max_length=256, max_prompt_length=128)
    rows = make_rows(count, seed)
    return tokenizer, [encoder.encode(read_pair(row, "row"), "row") for row in rows]


def full_logits_logps(model, batch):
    """Independent path: every position's logits, then the response tokens picked by label."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].float(), -1)
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    picked = logps.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return picked.sum(1), mask.sum(1)


def grads(model, value):
    model.zero_grad()
    value.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


WEIGHTS = torch.tensor([0.7, -1.3, 0.4, 2.0, -0.5, 1.1, -0.9, 0.3])  # a generic linear function of the sums


@pytest.mark.parametrize("kind,untie", [("llama", False), ("llama", True), ("gemma2", False)])
@pytest.mark.parametrize("padding_free", [False, True])
def test_chunked_and_packed_equal_full_logits(kind, untie, padding_free, tiny_model_dir):
    folder = tiny_model_dir(kind)
    tokenizer, feats = features(folder)
    model = load(folder, untie)
    if kind == "gemma2":
        assert model.config.final_logit_softcapping == 30.0
    padded = PairCollator(tokenizer.pad_token_id)(feats)
    reference_sums, reference_counts = full_logits_logps(model, padded)
    reference_grads = grads(model, (reference_sums * WEIGHTS).sum())

    batch = PairCollator(tokenizer.pad_token_id, padding_free=padding_free)(feats)
    if padding_free:
        use_per_sequence_attention(model)
        assert model.config._attn_implementation.startswith("simpo_packed_")
    for chunk_size in (0, 5, 64):
        sums, counts = response_logps(model, batch, chunk_size=chunk_size)
        assert torch.equal(counts, reference_counts)
        # A(y) = sum / count, what the loss uses (the sums themselves are ~200 in magnitude).
        assert torch.allclose(sums / counts, reference_sums / reference_counts, atol=1e-5, rtol=0), chunk_size
        got = grads(model, (sums * WEIGHTS).sum())
        assert got.keys() == reference_grads.keys()
        for name, grad in reference_grads.items():
            # fp32 sums in another order: within 1e-5 of the gradient's own scale.
            assert (got[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), (chunk_size, name)


@pytest.mark.parametrize("kind", ["llama", "gemma2"])
@pytest.mark.parametrize("per_sequence", [False, True])
def test_packed_row_never_attends_across_sequences(kind, per_sequence, tiny_model_dir):
    folder = tiny_model_dir(kind)
    tokenizer, feats = features(folder, count=3, seed=4)
    model = load(folder).eval()
    if per_sequence:
        use_per_sequence_attention(model)
    collate = PairCollator(tokenizer.pad_token_id, padding_free=True)
    batch = collate(feats)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    lengths = torch.bincount(batch["sequence_index"][0])
    assert lengths.sum() == batch["input_ids"].shape[1]  # no padding at all
    # Change every token of sequence 0: the hidden states of all other sequences must not move.
    changed = {key: value.clone() for key, value in batch.items()}
    first = batch["sequence_index"][0] == 0
    changed["input_ids"][0, first] = (batch["input_ids"][0, first] + 17) % len(tokenizer)
    def last_hidden(inputs):
        # Without a cache, as in training: transformers reads packed rows from position_ids only then.
        with torch.no_grad():
            out = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], use_cache=False, output_hidden_states=True)
        return out.hidden_states[-1][0]

    before, after = last_hidden(batch), last_hidden(changed)
    assert not torch.allclose(before[first], after[first])
    assert torch.equal(before[~first], after[~first])
    # And each sequence alone gives the same hidden states as inside the packed row.
    start = int(lengths[0])
    alone = batch["input_ids"][:, start : start + int(lengths[1])]
    with torch.no_grad():
        single = model(input_ids=alone, output_hidden_states=True).hidden_states[-1][0]
    assert torch.allclose(single, before[start : start + int(lengths[1])], atol=1e-5)


@pytest.mark.parametrize("head", ["frozen", "wrapped"])
def test_frozen_and_wrapped_heads_equal_full_logits(head, tiny_model_dir):
    """A frozen head (as under LoRA) gets no gradient; a head that is not a plain nn.Linear goes
    through autograd of the module itself. Both equal the full-logits path."""
    folder = tiny_model_dir("llama")
    tokenizer, feats = features(folder)
    model = load(folder, untie=True)
    if head == "frozen":
        model.lm_head.weight.requires_grad_(False)
    else:
        model.lm_head = torch.nn.Sequential(model.lm_head)
    batch = PairCollator(tokenizer.pad_token_id)(feats)
    reference_sums, _ = full_logits_logps(model, batch)
    reference_grads = grads(model, (reference_sums * WEIGHTS).sum())
    sums, counts = response_logps(model, batch, chunk_size=5)
    assert torch.allclose(sums / counts, reference_sums / counts, atol=1e-5, rtol=0)
    got = grads(model, (sums * WEIGHTS).sum())
    assert got.keys() == reference_grads.keys()
    assert not any(name.startswith("lm_head") for name in got) if head == "frozen" else "lm_head.0.weight" in got
    for name, grad in reference_grads.items():
        assert (got[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


@pytest.mark.parametrize("kind", ["llama", "gemma2"])
def test_chunked_head_under_bf16_autocast(kind, tiny_model_dir):
    """Under bf16 autocast the chunked head matches the full-logits path run under the same autocast,
    to bf16 precision, and keeps the fp32 weights' gradients in fp32."""
    folder = tiny_model_dir(kind)
    tokenizer, feats = features(folder)
    model = load(folder)
    batch = PairCollator(tokenizer.pad_token_id, padding_free=True)(feats)
    padded = PairCollator(tokenizer.pad_token_id)(feats)
    use_per_sequence_attention(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference_sums, counts = full_logits_logps(model, padded)
    reference_grads = grads(model, (reference_sums * WEIGHTS).sum())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sums, _ = response_logps(model, batch, chunk_size=16)
    assert sums.dtype == torch.float32
    assert torch.allclose(sums / counts, reference_sums / counts, atol=2e-2, rtol=0)
    got = grads(model, (sums * WEIGHTS).sum())
    head = model.get_output_embeddings().weight
    assert head.grad.dtype == torch.float32
    for name, grad in reference_grads.items():
        assert (got[name] - grad).abs().max() <= 0.1 * grad.abs().max(), name
