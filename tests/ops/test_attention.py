"""Per-sequence attention on packed rows: no token attends across sequences (or, with a shared
prompt, across the two responses), and a shared row with its longer response second is refused."""

import pytest
import torch
from helpers import load_causal_lm, pair_features

from simpo.data.collate import PairCollator
from simpo.ops.attention import use_per_sequence_attention


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


# Gemma-3 loads on SDPA (the model's own kernel per sequence in fp32); on eager, the CPU's blocked attention computes it.
@pytest.mark.parametrize("kind,attention", [("llama", None), ("gemma2", None), ("gemma3", None), ("gemma3", "eager")])
@pytest.mark.parametrize("layout", ["packed", "packed-per-sequence", "shared"])
def test_packed_row_never_attends_across_sequences(kind, attention, layout, tiny_model_dir):
    folder = tiny_model_dir(kind)
    tokenizer, feats = pair_features(folder, count=3, seed=4)
    model = load_causal_lm(folder, attention=attention).eval()
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




def test_shared_row_with_the_longer_response_second_is_refused(tiny_model_dir):
    """The second response's causal mask is cut from the first's block, so it must not be longer."""
    model = load_causal_lm(tiny_model_dir("llama"))
    use_per_sequence_attention(model)
    ids = torch.arange(10, 19).unsqueeze(0)
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 3, 4, 5, 6]])  # prompt 3, responses of 2 then 4 tokens
    with pytest.raises(ValueError, match="pair at token 0 has its longer response second"):
        model(input_ids=ids, position_ids=position_ids, use_cache=False)
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 3, 4]])  # 4 then 2: accepted
    assert model(input_ids=ids, position_ids=position_ids, use_cache=False).logits.shape == (1, 9, model.config.vocab_size)
