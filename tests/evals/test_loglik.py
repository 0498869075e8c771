"""MMLU by letter log-likelihood: each continuation's score equals the sum of its tokens' log-probs
from a plain forward of the whole sequence, one at a time, and the letter is the argmax."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.evals.loglik import continuation_logprobs, mmlu_context, predict_letters


def test_scores_equal_a_plain_forward_of_each_sequence(tiny_model_dir, one_thread):
    folder = tiny_model_dir("llama")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    pairs = [("Question: 2 + 2?\nA. 3\nB. 4\nAnswer:", " B"), ("Short\nAnswer:", " A"), ("x", " a longer continuation")]
    scores = continuation_logprobs(model, tokenizer, pairs, batch_size=3)
    for (context, continuation), score in zip(pairs, scores):
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        split = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        with torch.inference_mode():
            logprobs = model(input_ids=torch.tensor([whole])).logits[0].float().log_softmax(-1)
        expected = sum(logprobs[i - 1, whole[i]].item() for i in range(split, len(whole)))
        assert abs(score - expected) < 1e-4


def test_the_predicted_letter_is_the_most_likely_one(tiny_model_dir, one_thread):
    folder = tiny_model_dir("llama")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    items = [{"question": "Pick one", "choices": ["red", "green", "blue", "black"]}, {"question": "Q2", "choices": ["a", "b", "c", "d"]}]
    letters = predict_letters(model, tokenizer, items, batch_size=5)
    for item, letter in zip(items, letters):
        context = mmlu_context(item["question"], item["choices"])
        scores = continuation_logprobs(model, tokenizer, [(context, f" {x}") for x in "ABCD"], batch_size=1)
        assert letter == "ABCD"[max(range(4), key=scores.__getitem__)]
    assert mmlu_context("  Why? ", ["x", "y"]) == "Why?\nA. x\nB. y\nAnswer:"
