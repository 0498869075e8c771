"""A reward model: batched scores equal a plain forward of each conversation; a causal LM is refused."""

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from simpo.errors import RecipeError
from simpo.rewards.reward_model import RewardModel, check_reward_model


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory, smollm2_tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                         pad_token_id=smollm2_tokenizer.pad_token_id, eos_token_id=smollm2_tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny-rm")
    LlamaForSequenceClassification(config).save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def test_reward_model_scores_batched_equal_plain_forward(tiny_reward_model, tiny_model_dir):
    model = RewardModel({"type": "reward_model", "model": str(tiny_reward_model), "batch_size": 4})
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
