"""The local judge on a tiny random Llama: its AlpacaEval preference and Arena-Hard verdict scores equal
a plain transformers forward of the rendered prompt; the order maps back; long answers are cut to fit."""

from functools import partial

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.errors import RecipeError
from simpo.evals.judge_local import VERDICT_TEXTS, LocalJudge
from simpo.evals.judge_prompts import alpaca_eval_messages, arena_hard_messages
from simpo.evals.judges import VERDICTS, shown_order
from simpo.evals.tasks import task_for


@pytest.fixture(scope="module")
def llama_judge(tiny_model_dir):
    return LocalJudge(str(tiny_model_dir("llama")), dtype="float32", batch_size=2)


@pytest.fixture(scope="module")
def plain(tiny_model_dir):
    folder = tiny_model_dir("llama")
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(folder)


def plain_prompt_ids(tokenizer, messages):
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def plain_token_logps(model, ids, start):
    """Log-probabilities of the next token at positions `start`, `start` + 1, ... of `ids`."""
    with torch.no_grad():
        return model(torch.tensor([ids]), logits_to_keep=len(ids) - start).logits[0].double().log_softmax(-1)


ITEMS = [("Name a color.", "Blue.", "The sky is blue, so blue."), ("What is 2 + 3?", "5", "It is 5."),
         ("Say hi.", "Hello there, friend!", "hi"), ("Count to four.", "1, 2, 3, 4", "one two three four")]


def test_alpaca_eval_preference_equals_a_plain_forward(llama_judge, plain, one_thread):
    model, tokenizer = plain
    m_id, big_m_id = (tokenizer(text, add_special_tokens=False)["input_ids"][0] for text in ("m", "M"))
    expected = []
    for instruction, model_output, reference_output in ITEMS:
        output_1, output_2, model_first = shown_order(instruction, model_output, reference_output)
        prompt = plain_prompt_ids(tokenizer, alpaca_eval_messages(instruction, output_1, output_2))
        logps = plain_token_logps(model, prompt, len(prompt) - 1)[0]
        second_share = torch.softmax(logps[[m_id, big_m_id]], -1)[1].item()
        expected.append(2 - second_share if model_first else 1 + second_share)
    assert {shown_order(*item)[2] for item in ITEMS} == {True, False}  # both orders are exercised
    assert llama_judge.prefer(ITEMS) == pytest.approx(expected, abs=1e-5)


def test_an_output_equal_to_the_reference_is_a_draw_the_judge_never_sees(llama_judge, one_thread):
    # As alpaca_eval's pairwise annotator does: preference 1.5, no judge request.
    task = task_for("alpaca_eval")
    items = [{"instruction": instruction, "reference": reference} for instruction, _, reference in ITEMS]
    outputs = [ITEMS[0][2], ITEMS[1][1], ITEMS[2][2], ITEMS[3][1]]  # the 1st and 3rd equal their reference
    before = llama_judge.counters["requests"]
    preferences = task.judge_shard(llama_judge, items, outputs)
    assert llama_judge.counters["requests"] - before == 2
    assert preferences[0] == preferences[2] == 1.5
    assert [preferences[1], preferences[3]] == pytest.approx(llama_judge.prefer([ITEMS[1], ITEMS[3]]), abs=1e-6)
    assert preferences[1] != pytest.approx(1.5, abs=1e-6)
    before = llama_judge.counters["requests"]
    assert task.judge_shard(llama_judge, items[:1], outputs[:1]) == [1.5]
    assert llama_judge.counters["requests"] == before


GAMES = [("What is 2 + 3?", "math", "5", "It is 6."), ("Name a fruit.", "creative_writing", "An apple, red and round.", "Pear"),
         ("Say hi.", "hard_prompt", "Hello!", "Hi there, how are you today?")]


def test_arena_hard_verdict_is_the_argmax_of_plain_sequence_logps(llama_judge, plain, one_thread):
    model, tokenizer = plain
    expected_scores = []
    for question, category, answer_a, answer_b in GAMES:
        prompt = plain_prompt_ids(tokenizer, arena_hard_messages(question, category, answer_a, answer_b))
        row = []
        for text in VERDICT_TEXTS:
            verdict = tokenizer(text, add_special_tokens=False)["input_ids"]
            logps = plain_token_logps(model, prompt + verdict, len(prompt) - 1)
            row.append(sum(logps[t, token].item() for t, token in enumerate(verdict)))
        expected_scores.append(row)
    expected_scores = torch.tensor(expected_scores, dtype=torch.float64)
    prompts = [llama_judge.prompt_ids(arena_hard_messages(*game)) for game in GAMES]
    with torch.inference_mode():
        scores = llama_judge.verdict_logps(prompts).double()
    assert torch.allclose(scores, expected_scores, atol=1e-4)
    assert llama_judge.verdicts(GAMES) == [VERDICTS[int(i)] for i in expected_scores.argmax(-1)]


def test_long_answers_are_cut_from_the_end_to_fit(tiny_model_dir, one_thread):
    judge = LocalJudge(str(tiny_model_dir("llama")), dtype="float32")
    long_output = " ".join(f"word{i}" for i in range(400))
    build = partial(alpaca_eval_messages, "Write many words.")
    ids = judge.fit(build, long_output, "Short answer.", reserve=0)
    text = judge.tokenizer.decode(ids)
    assert judge.context == 512 and 500 <= len(ids) <= 512
    assert '"""Short answer."""' in text and '"""word0 word1 word2' in text and "word399" not in text
    assert judge.counters["truncated"] == 1
    [preference] = judge.prefer([("Write many words.", long_output, "Short answer.")])
    assert 1 <= preference <= 2 and judge.counters["truncated"] == 2
    assert judge.prefer([(" ".join(["instruction"] * 600), "a", "b")]) == [None]
    assert (judge.counters["too_long"], judge.counters["requests"]) == (1, 2)


def test_a_template_without_system_role_gets_it_folded(tiny_model_dir):
    judge = LocalJudge(str(tiny_model_dir("gemma2")), dtype="float32")
    text = judge.tokenizer.decode(judge.prompt_ids(alpaca_eval_messages("Say hi.", "hi", "hello")))
    assert not judge.shows_system
    assert text.startswith("<bos><start_of_turn>user\nYou are a highly efficient assistant")
    assert text.endswith("## Best Model Identifier<end_of_turn>\n<start_of_turn>model\n")
    assert judge.name == f"local:{tiny_model_dir('gemma2')}"


def test_a_bad_dtype_is_refused(tiny_model_dir):
    with pytest.raises(RecipeError, match="judge dtype 'fp8' is not one of auto, float32, bfloat16, float16"):
        LocalJudge(str(tiny_model_dir("llama")), dtype="fp8")


def test_verdict_scores_with_a_sliding_window_model_equal_a_plain_forward(tiny_model_dir, one_thread):
    # Gemma-2 (sliding window 32): prompts past the window, left-padded in one batch, the cache shared by the verdicts.
    folder = tiny_model_dir("gemma2")
    judge = LocalJudge(str(folder), dtype="float32", batch_size=3)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompts = [judge.prompt_ids([{"role": "user", "content": "Which answer is better? " * repeats}]) for repeats in (2, 9, 14)]
    assert len(prompts[0]) < 32 < len(prompts[1]) < len(prompts[2])
    expected = []
    for prompt in prompts:
        row = []
        for text in VERDICT_TEXTS:
            verdict = judge.tokenizer(text, add_special_tokens=False)["input_ids"]
            logps = plain_token_logps(model, prompt + verdict, len(prompt) - 1)
            row.append(sum(logps[t, token].item() for t, token in enumerate(verdict)))
        expected.append(row)
    with torch.inference_mode():
        scores = judge.verdict_logps(prompts).double()
    assert torch.allclose(scores, torch.tensor(expected, dtype=torch.float64), atol=1e-4)
