"""Chunked response log-probs equal the full-logits path; packed rows equal padded batches."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.data.bundled import make_rows
from simpo.data.collate import PairCollator
from simpo.data.encode import PairEncoder
from simpo.data.rows import read_pair
from simpo.ops.attention import use_per_sequence_attention
from simpo.ops.logprobs import response_logps


def load(folder, untie=False):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if untie:  # a separate output head, as Llama-3-8B and Mistral have
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() + 0.01)
    return model


def features(folder, count=4, seed=9):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = PairEncoder(tokenizer, max_length=256, max_prompt_length=128)
    feats = [encoder.encode(read_pair(row, "row"), "row") for row in make_rows(count, seed)]
    # Unequal responses both ways round, so that a shared prompt is followed by either one first.
    feats[0]["rejected_ids"] = feats[0]["rejected_ids"] + feats[0]["chosen_ids"][:7]
    feats[1]["chosen_ids"] = feats[1]["chosen_ids"] + feats[1]["rejected_ids"][:5]
    return tokenizer, feats


def full_logits_logps(model, feats):
    """Independent path: each sequence padded on its own row, every position's logits, and the
    response tokens read off the features: position P+j-1 predicts response token j."""
    sequences = [(f["prompt_ids"], f[side]) for side in ("chosen_ids", "rejected_ids") for f in feats]
    width = max(len(p) + len(r) for p, r in sequences)
    input_ids = torch.zeros(len(sequences), width, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, (prompt, response) in enumerate(sequences):
        input_ids[row, : len(prompt) + len(response)] = torch.tensor(prompt + response)
        attention_mask[row, : len(prompt) + len(response)] = 1
    logps = torch.log_softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits.float(), -1)
    sums = torch.stack([
        sum(logps[row, len(prompt) + j - 1, token] for j, token in enumerate(response))
        for row, (prompt, response) in enumerate(sequences)
    ])
    return sums, torch.tensor([len(response) for _, response in sequences])


def grads(model, value):
    model.zero_grad()
    value.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


WEIGHTS = torch.tensor([0.7, -1.3, 0.4, 2.0, -0.5, 1.1, -0.9, 0.3])  # a generic linear function of the sums


LAYOUTS = {"padded": (False, False), "packed": (True, False), "shared": (True, True)}  # padding_free, share_prompt


@pytest.mark.parametrize("kind,untie", [("llama", False), ("llama", True), ("gemma2", False)])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_chunked_and_packed_equal_full_logits(kind, untie, layout, tiny_model_dir):
    folder = tiny_model_dir(kind)
    tokenizer, feats = features(folder)
    model = load(folder, untie)
    if kind == "gemma2":
        assert model.config.final_logit_softcapping == 30.0
    reference_sums, reference_counts = full_logits_logps(model, feats)
    reference_grads = grads(model, (reference_sums * WEIGHTS).sum())

    batch = PairCollator(tokenizer.pad_token_id, *LAYOUTS[layout])(feats)
    if layout != "padded":
        assert use_per_sequence_attention(model)
        assert model.config._attn_implementation.startswith("simpo_packed_")
    tokens = sum(len(f["prompt_ids"]) * (1 if layout == "shared" else 2) + len(f["chosen_ids"]) + len(f["rejected_ids"]) for f in feats)
    assert batch["input_ids"].shape[1] == tokens or layout == "padded"  # no padding, each shared prompt once
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


def spans(feats, share_prompt):
    """Per pair, the packed row's token ranges: (prompt, chosen, rejected), from the lengths alone."""
    out, start = [], 0
    for f in feats:
        p, c, r = len(f["prompt_ids"]), len(f["chosen_ids"]), len(f["rejected_ids"])
        if share_prompt:
            first, second = (c, r) if c >= r else (r, c)
            branches = [range(start + p, start + p + first), range(start + p + first, start + p + first + second)]
            out.append((range(start, start + p), *(branches if c >= r else branches[::-1])))
            start += p + c + r
    if not share_prompt:  # all chosen sequences, then all rejected ones, each with its prompt
        for side in (0, 1):
            for f in feats:
                p, n = len(f["prompt_ids"]), len(f["prompt_ids"]) + len(f["chosen_ids" if side == 0 else "rejected_ids"])
                out.append((range(start, start + p), range(start + p, start + n)))
                start += n
    return out


@pytest.mark.parametrize("kind", ["llama", "gemma2"])
@pytest.mark.parametrize("layout", ["packed", "packed-per-sequence", "shared"])
def test_packed_row_never_attends_across_sequences(kind, layout, tiny_model_dir):
    folder = tiny_model_dir(kind)
    tokenizer, feats = features(folder, count=3, seed=4)
    model = load(folder).eval()
    if layout != "packed":
        use_per_sequence_attention(model)
    share = layout == "shared"
    batch = PairCollator(tokenizer.pad_token_id, padding_free=True, share_prompt=share)(feats)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch

    def last_hidden(input_ids):
        # Without a cache, as in training: transformers reads packed rows from position_ids only then.
        with torch.no_grad():
            out = model(input_ids=input_ids, position_ids=batch["position_ids"], use_cache=False, output_hidden_states=True)
        return out.hidden_states[-1][0]

    def changed(tokens: list[int]):
        ids = batch["input_ids"].clone()
        ids[0, tokens] = (ids[0, tokens] + 17) % len(tokenizer)
        return ids

    before = last_hidden(batch["input_ids"])
    every = set(range(batch["input_ids"].shape[1]))
    groups = spans(feats, share)
    # Change one sequence (or, shared, one response) at a time: nothing outside it may move.
    for group in groups:
        for part in group[1:] if share else [[*group[0], *group[1]]]:
            part = list(part)
            after = last_hidden(changed(part))
            assert not torch.allclose(before[part], after[part])
            rest = sorted(every - set(part))
            assert torch.equal(before[rest], after[rest])
    # And each sequence alone gives the same hidden states as inside the packed row.
    for prompt, *responses in groups[:2]:
        for response in responses:
            tokens = [*prompt, *response]
            with torch.no_grad():
                single = model(input_ids=batch["input_ids"][:, tokens], output_hidden_states=True).hidden_states[-1][0]
            assert torch.allclose(single, before[tokens], atol=1e-5)


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
    reference_sums, _ = full_logits_logps(model, feats)
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
    batch = PairCollator(tokenizer.pad_token_id, padding_free=True, share_prompt=True)(feats)
    use_per_sequence_attention(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference_sums, counts = full_logits_logps(model, feats)
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


def test_shared_row_with_the_longer_response_second_is_refused(tiny_model_dir):
    """The second response's causal mask is cut from the first's block, so it must not be longer."""
    model = load(tiny_model_dir("llama"))
    use_per_sequence_attention(model)
    ids = torch.arange(10, 19).unsqueeze(0)
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 3, 4, 5, 6]])  # prompt 3, responses of 2 then 4 tokens
    with pytest.raises(ValueError, match="pair at token 0 has its longer response second"):
        model(input_ids=ids, position_ids=position_ids, use_cache=False)
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 3, 4]])  # 4 then 2: accepted
    assert model(input_ids=ids, position_ids=position_ids, use_cache=False).logits.shape == (1, 9, model.config.vocab_size)
