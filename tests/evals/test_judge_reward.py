"""The reward-model judge on a tiny random LlamaForSequenceClassification: preferences are 1 + sigmoid of
plainly computed score differences, verdicts follow the scores."""

import math

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from simpo.evals.judge_reward import RewardJudge
from simpo.evals.judges import open_judge


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory, smollm2_tokenizer):
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1, max_position_embeddings=96,
                         pad_token_id=smollm2_tokenizer.pad_token_id, eos_token_id=smollm2_tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny-judge-rm")
    LlamaForSequenceClassification(config).save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def plain_score(tiny_reward_model):
    """The first logit of a plain forward of [user: prompt, assistant: answer] rendered by the template."""
    model = LlamaForSequenceClassification.from_pretrained(tiny_reward_model, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_reward_model)

    def score(prompt, answer):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], tokenize=False)
        with torch.no_grad():
            return model(**tokenizer(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0].item()

    return score


def test_preferences_and_verdicts_follow_plain_scores(tiny_reward_model, plain_score, one_thread):
    judge = open_judge(f"reward:{tiny_reward_model}", dtype="float32", batch_size=3)
    assert isinstance(judge, RewardJudge) and judge.name == f"reward:{tiny_reward_model}"
    items = [("What is 2 + 3?", "5", "It is 6."), ("Name a colour.", "Blue, like the sky.", "Red"),
             ("Say hi.", "Hello!", "Hello!")]
    expected = []
    for instruction, model_output, reference_output in items:
        difference = plain_score(instruction, model_output) - plain_score(instruction, reference_output)
        expected.append(1 + 1 / (1 + math.exp(-difference)))
    preferences = judge.prefer(items)
    assert preferences == pytest.approx(expected, abs=1e-5)
    assert preferences[2] == 1.5 and preferences[0] != pytest.approx(1.5, abs=1e-4)
    games = [(instruction, "math", answer_a, answer_b) for instruction, answer_a, answer_b in items]
    scores_a = [plain_score(q, a) for q, _, a, _ in games]
    scores_b = [plain_score(q, b) for q, _, _, b in games]
    assert judge.verdicts(games) == ["A>B" if a > b else "B>A" for a, b in zip(scores_a[:2], scores_b[:2])] + ["A=B"]
    assert judge.verdicts([(q, c, b, a) for q, c, a, b in games[:2]]) == ["B>A" if a > b else "A>B" for a, b in zip(scores_a[:2], scores_b[:2])]
    assert judge.counters["requests"] == 3 + 3 + 2 and judge.counters["truncated"] == 0


def test_answers_past_the_reward_models_limit_are_counted(tiny_reward_model, one_thread):
    judge = RewardJudge(str(tiny_reward_model), dtype="float32")
    [preference] = judge.prefer([("Write a lot.", " ".join(["many words"] * 100), "few words")])
    assert 1 < preference < 2 and judge.counters["truncated"] == 1
