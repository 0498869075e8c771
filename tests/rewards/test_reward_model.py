"""A reward model: batched scores equal a plain forward of each conversation, come back in input
order though batched longest first; the weights load in `auto` unless set; a causal LM is refused."""

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

import simpo.models.precision as precision
from simpo.errors import RecipeError
from simpo.models.precision import DTYPES, resolve_dtype
from simpo.rewards.reward_model import RewardModel, check_reward_model


def _save_tiny_reward_model(folder, tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory, smollm2_tokenizer):
    """Pads with SmolLM2's pad == eos (<|im_end|>), which every rendered conversation holds: rows go alone."""
    return _save_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm"), smollm2_tokenizer)


@pytest.fixture(scope="module")
def batching_reward_model(tmp_path_factory, smollm2_dir):
    """Pads with <|endoftext|>, which no rendered conversation holds: rows are batched and padded."""
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir, pad_token="<|endoftext|>")
    return _save_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm-batching"), tokenizer)


def _conversation(word: str, repeats: int) -> list[dict]:
    return [{"role": "user", "content": f"Say {word}."}, {"role": "assistant", "content": f" {word}" * repeats}]


# Clearly different lengths, not sorted; "two" and "five" are the same length (checked below).
CONVERSATIONS = [_conversation(word, repeats) for word, repeats in
                 (("one", 3), ("two", 40), ("three", 1), ("four", 20), ("five", 40), ("six", 8))]


def test_reward_model_scores_batched_equal_plain_forward(tiny_reward_model, tiny_model_dir):
    model = RewardModel({"type": "reward_model", "model": str(tiny_reward_model), "batch_size": 4, "dtype": "float32"})
    conversations = [[{"role": "user", "content": f"What is {i} + 1?"}, {"role": "assistant", "content": "x" * (i + 1)}] for i in range(5)]
    scores = model.score(conversations)
    plain = LlamaForSequenceClassification.from_pretrained(tiny_reward_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_reward_model)
    for conversation, score in zip(conversations, scores):
        ids = tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False), add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            expected = plain(**ids).logits[0, 0].item()
        assert score == pytest.approx(expected, abs=1e-5)


def test_a_causal_lm_is_refused_as_reward_model(tiny_model_dir):
    with pytest.raises(RecipeError, match="is not a sequence classifier .*LlamaForCausalLM"):
        check_reward_model(str(tiny_model_dir("llama")))


@pytest.mark.parametrize("fixture", ["batching_reward_model", "tiny_reward_model"])
def test_scores_come_back_in_input_order_and_equal_each_conversation_alone(fixture, request, one_thread):
    model = RewardModel({"type": "reward_model", "model": str(request.getfixturevalue(fixture)), "batch_size": 2, "dtype": "float32"})
    scores = model.score(CONVERSATIONS)
    alone = [model.score([conversation])[0] for conversation in CONVERSATIONS]
    # fp32: a padded row differs from its unpadded forward by rounding only (2e-8 on this model).
    assert scores == pytest.approx(alone, abs=1e-5)
    gaps = [abs(a - b) for i, a in enumerate(alone) for b in alone[i + 1 :]]
    assert min(gaps) > 1e-3  # the scores tell the conversations apart, so a wrong order would show


def test_batches_are_formed_longest_first_ties_in_input_order(batching_reward_model, one_thread):
    model = RewardModel({"type": "reward_model", "model": str(batching_reward_model), "batch_size": 2, "dtype": "float32"})
    ids = [model._ids(conversation) for conversation in CONVERSATIONS]
    assert len(ids[1]) == len(ids[4]) and len({len(row) for row in ids}) == 5
    seen = []

    def record(module, args, kwargs):
        input_ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        seen.append([row[: int(n)].tolist() for row, n in zip(input_ids, mask.sum(1))])
        assert input_ids.shape[1] == int(mask.sum(1).max())  # padded to its own longest row

    handle = model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        model.score(CONVERSATIONS)
    finally:
        handle.remove()
    assert seen == [[ids[1], ids[4]], [ids[3], ids[5]], [ids[0], ids[2]]]


def test_the_weights_load_in_auto_unless_a_dtype_is_set(tiny_reward_model, monkeypatch):
    def dtype(spec):
        model = RewardModel({"type": "reward_model", "model": str(tiny_reward_model), **spec})
        return {parameter.dtype for parameter in model.model.parameters()}

    assert dtype({}) == {DTYPES[resolve_dtype("auto")]}  # this machine's choice
    assert dtype({"dtype": "float32"}) == {torch.float32}
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):  # either choice, on any machine
        monkeypatch.setattr(precision, "native_bf16", lambda device="cpu", native=native: (native, "set by the test"))
        assert dtype({}) == {expected}
        assert dtype({"dtype": "float32"}) == {torch.float32}
