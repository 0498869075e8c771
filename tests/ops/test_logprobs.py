"""Chunked response log-probs equal the full-logits path; packed rows equal padded batches; pairs
in one batch equal each side alone and plain transformers."""

import pytest
import torch
from helpers import load_causal_lm, pair_features, plain_average_logps
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.data.bundled import make_rows
from simpo.data.collate import PairCollator
from simpo.data.encode import PairEncoder
from simpo.data.rows import read_pair
from simpo.ops.attention import use_per_sequence_attention
from simpo.ops.logprobs import response_logps


def full_logits_logps(model, feats):
    """Independent path: each sequence padded on its own row, every position's logits, and the
    response tokens read off the features: position P+j-1 predicts response token j. Per sequence:
    the log-prob sums, the token counts, and the sums of the mean logit over the vocabulary."""
    sequences = [(f["prompt_ids"], f[side]) for side in ("chosen_ids", "rejected_ids") for f in feats]
    width = max(len(p) + len(r) for p, r in sequences)
    input_ids = torch.zeros(len(sequences), width, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, (prompt, response) in enumerate(sequences):
        input_ids[row, : len(prompt) + len(response)] = torch.tensor(prompt + response)
        attention_mask[row, : len(prompt) + len(response)] = 1
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    logps = torch.log_softmax(logits, -1)
    sums = torch.stack([
        sum(logps[row, len(prompt) + j - 1, token] for j, token in enumerate(response))
        for row, (prompt, response) in enumerate(sequences)
    ])
    logit_sums = torch.stack([logits[row, len(prompt) - 1 : len(prompt) + len(response) - 1].mean(-1).sum().detach()
                              for row, (prompt, response) in enumerate(sequences)])
    return sums, torch.tensor([len(response) for _, response in sequences]), logit_sums


def grads(model, value):
    model.zero_grad()
    value.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


WEIGHTS = torch.tensor([0.7, -1.3, 0.4, 2.0, -0.5, 1.1, -0.9, 0.3])  # a generic linear function of the sums


LAYOUTS = {"padded": (False, False), "packed": (True, False), "shared": (True, True)}  # padding_free, share_prompt


@pytest.mark.parametrize("kind,untie,attention", [("llama", False, None), ("llama", True, None), ("gemma2", False, None),
                                                  ("gemma3", False, None), ("gemma3", False, "eager")])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_chunked_and_packed_equal_full_logits(kind, untie, attention, layout, tiny_model_dir):
    folder = tiny_model_dir(kind)
    tokenizer, feats = pair_features(folder)
    model = load_causal_lm(folder, untie, attention)
    if kind == "gemma2":
        assert model.config.final_logit_softcapping == 30.0
    reference_sums, reference_counts, reference_logits = full_logits_logps(model, feats)
    reference_grads = grads(model, (reference_sums * WEIGHTS).sum())

    batch = PairCollator(tokenizer.pad_token_id, *LAYOUTS[layout])(feats)
    if layout != "padded":
        assert use_per_sequence_attention(model)
        assert model.config._attn_implementation.startswith("simpo_packed_")
    if layout == "padded":  # chosen sequences then rejected ones, one a row, padded to the longest
        width = max(len(f["prompt_ids"]) + len(f[side]) for f in feats for side in ("chosen_ids", "rejected_ids"))
        assert batch["input_ids"].shape == (2 * len(feats), width)
    else:  # one row, no padding, each shared prompt once
        tokens = sum(len(f["prompt_ids"]) * (1 if layout == "shared" else 2) + len(f["chosen_ids"]) + len(f["rejected_ids"]) for f in feats)
        assert batch["input_ids"].shape == (1, tokens)
    for chunk_size in (0, 5, 64):
        sums, counts, logit_sums = response_logps(model, batch, chunk_size=chunk_size)
        assert torch.equal(counts, reference_counts)
        assert torch.allclose(logit_sums / counts, reference_logits / counts, atol=1e-5, rtol=0), chunk_size
        # A(y) = sum / count, what the loss uses (the sums themselves are ~200 in magnitude).
        assert torch.allclose(sums / counts, reference_sums / reference_counts, atol=1e-5, rtol=0), chunk_size
        got = grads(model, (sums * WEIGHTS).sum())
        assert got.keys() == reference_grads.keys()
        for name, grad in reference_grads.items():
            # fp32 sums in another order: within 1e-5 of the gradient's own scale.
            assert (got[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), (chunk_size, name)


@pytest.mark.parametrize("head", ["frozen", "wrapped"])
def test_frozen_and_wrapped_heads_equal_full_logits(head, tiny_model_dir):
    """A frozen head (as under LoRA) gets no gradient; a head that is not a plain nn.Linear goes
    through autograd of the module itself. Both equal the full-logits path."""
    folder = tiny_model_dir("llama")
    tokenizer, feats = pair_features(folder)
    model = load_causal_lm(folder, untie=True)
    if head == "frozen":
        model.lm_head.weight.requires_grad_(False)
    else:
        model.lm_head = torch.nn.Sequential(model.lm_head)
    batch = PairCollator(tokenizer.pad_token_id)(feats)
    reference_sums, _, reference_logits = full_logits_logps(model, feats)
    reference_grads = grads(model, (reference_sums * WEIGHTS).sum())
    sums, counts, logit_sums = response_logps(model, batch, chunk_size=5)
    assert torch.allclose(sums / counts, reference_sums / counts, atol=1e-5, rtol=0)
    assert torch.allclose(logit_sums / counts, reference_logits / counts, atol=1e-5, rtol=0)
    got = grads(model, (sums * WEIGHTS).sum())
    assert got.keys() == reference_grads.keys()
    assert not any(name.startswith("lm_head") for name in got) if head == "frozen" else "lm_head.0.weight" in got
    for name, grad in reference_grads.items():
        assert (got[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


@pytest.mark.parametrize("kind", ["llama", "gemma2", "gemma3"])
def test_chunked_head_under_bf16_autocast(kind, tiny_model_dir):
    """Under bf16 autocast the chunked head matches the full-logits path run under the same autocast,
    to bf16 precision, and keeps the fp32 weights' gradients in fp32."""
    folder = tiny_model_dir(kind)
    tokenizer, feats = pair_features(folder)
    model = load_causal_lm(folder)
    batch = PairCollator(tokenizer.pad_token_id, padding_free=True, share_prompt=True)(feats)
    use_per_sequence_attention(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference_sums, counts, _ = full_logits_logps(model, feats)
    reference_grads = grads(model, (reference_sums * WEIGHTS).sum())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sums = response_logps(model, batch, chunk_size=16).sums
    assert sums.dtype == torch.float32
    assert torch.allclose(sums / counts, reference_sums / counts, atol=2e-2, rtol=0)
    got = grads(model, (sums * WEIGHTS).sum())
    head = model.get_output_embeddings().weight
    assert head.grad.dtype == torch.float32
    for name, grad in reference_grads.items():
        assert (got[name] - grad).abs().max() <= 0.1 * grad.abs().max(), name


def encode_rows(tokenizer, rows):
    encoder = PairEncoder(tokenizer, max_length=256, max_prompt_length=128)
    return [encoder.encode(read_pair(row, f"row {i}"), f"row {i}") for i, row in enumerate(rows)]


@pytest.mark.parametrize("kind", ["llama", "gemma2", "gemma3"])
def test_concatenated_forward_equals_separate_and_plain(kind, tiny_model_dir):
    folder = tiny_model_dir(kind)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rows = make_rows(5, seed=3)
    features = encode_rows(tokenizer, rows)
    collate = PairCollator(tokenizer.pad_token_id)
    with torch.no_grad():
        sums, counts, _ = response_logps(model, collate(features))
        together = sums / counts
        apart = []
        for side in ("chosen_ids", "rejected_ids"):
            batch = collate([{"prompt_ids": f["prompt_ids"], "chosen_ids": f[side], "rejected_ids": f[side]} for f in features])
            side_sums, side_counts, _ = response_logps(model, batch)
            apart.append((side_sums / side_counts)[: len(features)])
    assert torch.allclose(together, torch.cat(apart), atol=1e-5, rtol=0)
    plain = torch.cat([plain_average_logps(model, tokenizer, rows, side) for side in ("chosen", "rejected")])
    assert torch.allclose(together.double(), plain, atol=1e-5, rtol=0)
