"""On-policy data: generation (batched = one at a time, reproducible seeds, resume after kill -9),
rewards, binarize, and the pipeline end to end on a tiny random Llama."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import REPO, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from simpo.cli import main
from simpo.config.pipeline import load_pipeline
from simpo.data.bundled import make_prompts, make_rows
from simpo.data.rows import read_pair
from simpo.errors import RecipeError
from simpo.generation.backends import TransformersBackend
from simpo.generation.prompts import PromptRenderer, prompt_messages
from simpo.rewards.programmatic import constraints_met, numeric_answer
from simpo.rewards.reward_model import RewardModel, check_reward_model
from simpo.stages.binarize import binarize_row
from simpo.stages.shards import read_stage


def test_numeric_answer_reads_the_last_number():
    assert numeric_answer("12 + 30 = 42. The answer is 42.", 42) == 1.0
    assert numeric_answer("The answer is 1,234.", "1234") == 1.0
    assert numeric_answer("It is -7.", -7) == 1.0
    assert numeric_answer("42 is close, but the answer is 41.", 42) == 0.0
    assert numeric_answer("no number here", 3) == 0.0


def test_constraints_score_is_the_fraction_met():
    constraints = {"max_words": 3, "lowercase": True, "keywords": ["Cat", "dog"]}
    # 4 words (fails max_words), lowercase (ok), has "cat" (ok), no "dog" (fails): 2 of 4.
    assert constraints_met("a cat sat here", constraints) == 2 / 4
    assert constraints_met("cat and dog", constraints) == 1.0


def test_binarize_takes_best_and_worst_and_drops_ties():
    row = {"prompt_id": "p", "prompt": "Q?", "all_generated_responses": ["a", "b", "c", "d"], "all_rm_scores": [0.5, 2.0, -1.0, 2.0]}
    pair = binarize_row(row)
    assert pair["chosen"] == [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "b"}]
    assert pair["rejected"][-1]["content"] == "c"
    read = read_pair(pair, "row 0")  # the layout `simpo train` reads
    assert read.prompt == [{"role": "user", "content": "Q?"}] and read.chosen["content"] == "b"
    assert binarize_row({**row, "all_rm_scores": [1, 1, 1, 1]}) == "all scores tie"
    assert binarize_row({**row, "all_generated_responses": ["x", "x ", "x", "x"]}) == "best and worst responses identical"
    assert binarize_row(row, min_score_gap=3.5) == "score gap below min_score_gap"


def test_prompt_validation_names_the_problem():
    assert prompt_messages("hi", "r") == [{"role": "user", "content": "hi"}]
    for bad, message in (("  ", "r: empty prompt"), (7, "r: 'prompt' must be a string or a non-empty list"), ([{"role": "user"}], "not {'role'"),
                         ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "ends with a 'assistant'")):
        with pytest.raises(ValueError, match=message):
            prompt_messages(bad, "r")


def test_batched_generation_equals_one_prompt_at_a_time(tiny_model_dir):
    folder = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    renderer = PromptRenderer(tokenizer)
    questions = [row["prompt"] for row in make_prompts(3, seed=1) + make_rows(3, seed=1)]
    prompts = [renderer.ids(prompt_messages(question, "")) for question in questions]
    assert len({len(ids) for ids in prompts}) > 1  # different lengths: left padding is exercised
    batched, tokens = TransformersBackend(model, tokenizer, renderer.stop_ids, 6).generate(prompts, None, 0.0, 1.0, 12)
    single, single_tokens = TransformersBackend(model, tokenizer, renderer.stop_ids, 1).generate(prompts, None, 0.0, 1.0, 12)
    assert batched == single and tokens == single_tokens and tokens > 0


def _write_prompts(folder, train=10, test=4):
    write_jsonl(folder / "train.jsonl", make_prompts(train, seed=3))
    write_jsonl(folder / "test.jsonl", make_prompts(test, seed=4))
    return folder


def _generate_args(model, prompts, out, *extra):
    return ["--model_name_or_path", str(model), "--generate.prompts", str(prompts), "--generate.output", str(out),
            "--generate.max_new_tokens", "8", "--generate.seeds", "[13,21,42]", "--generate.shard_size", "2",
            "--generate.batch_size", "4", *extra]


def test_generate_reproduces_with_seeds_and_refuses_changed_settings(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    prompts = _write_prompts(tmp_path / "prompts")
    rows = make_prompts(10, seed=3)
    rows[2]["prompt"] = ""
    rows[5]["prompt"] = {"not": "text"}
    write_jsonl(prompts / "train.jsonl", rows)
    assert main(["generate", *_generate_args(folder, prompts, tmp_path / "a")]) == 0
    assert main(["generate", *_generate_args(folder, prompts, tmp_path / "b")]) == 0
    first, second = read_stage(tmp_path / "a"), read_stage(tmp_path / "b")
    assert first == second
    assert [row["row"] for row in first] == [0, 1, 3, 4, 6, 7, 8, 9]  # rows 2 and 5 skipped
    assert all(len(row["all_generated_responses"]) == 3 and row["seeds"] == [13, 21, 42] for row in first)
    assert first[0]["answer"] == rows[0]["answer"]  # the reference answer travels with the row
    assert len({response for row in first for response in row["all_generated_responses"]}) > len(first)
    with pytest.raises(RecipeError, match=r"other settings \(.*temperature: 0.8 -> 0.5"):
        pipeline = load_pipeline(None, _generate_args(folder, prompts, tmp_path / "a", "--generate.temperature", "0.5"))
        from simpo.stages.generate import run_generate

        run_generate(pipeline.train.model, pipeline.generate)


def test_generate_killed_mid_run_resumes_without_loss_or_repeat(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    prompts = _write_prompts(tmp_path / "prompts", train=24)
    out = tmp_path / "killed"
    args = _generate_args(folder, prompts, out, "--generate.max_new_tokens", "48")
    command = [sys.executable, "-m", "simpo.cli", "generate", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "shard-00002.jsonl").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = sorted(path.name for path in out.glob("shard-*.jsonl"))
    assert 3 <= len(written) < 12 and not (out / "COMPLETE").exists()
    assert main(["generate", *args]) == 0
    assert main(["generate", *_generate_args(folder, prompts, tmp_path / "whole", "--generate.max_new_tokens", "48")]) == 0
    resumed, whole = read_stage(out), read_stage(tmp_path / "whole")
    assert [row["row"] for row in resumed] == list(range(24))
    assert resumed == whole  # nothing lost, nothing twice, the same text as an uninterrupted run
    assert not list(out.glob("*.partial"))


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


def _pipeline_recipe(tmp_path, model, prompts, **extra):
    recipe = {
        "model_name_or_path": str(model), "run_dir": str(tmp_path / "run"),
        "generate": {"prompts": str(prompts), "seeds": [1, 2, 3, 4], "max_new_tokens": 8, "batch_size": 8, "shard_size": 4},
        "annotate": {"rewards": [{"type": "numeric_answer"}]},
        "binarize": {"test_size": 0.2},
        "evaluate": {"max_new_tokens": 8},
        "max_length": 128, "max_prompt_length": 64, "per_device_train_batch_size": 2, "max_steps": 2,
        "learning_rate": 1e-3, "report_to": "none", "save_strategy": "no", "disable_tqdm": True, **extra,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_pipeline_runs_every_stage_then_skips_them(tiny_model_dir, tmp_path, capsys):
    folder = tiny_model_dir("llama")
    prompts = _write_prompts(tmp_path / "prompts", train=16)
    # A tiny random model rarely writes the right number; a word limit separates its responses too.
    recipe = _pipeline_recipe(tmp_path, folder, prompts, annotate={"rewards": [{"type": "numeric_answer"}, {"type": "constraints"}]})
    rows = make_prompts(16, seed=3)
    for row in rows:
        row["constraints"] = {"max_words": 3}
    write_jsonl(prompts / "train.jsonl", rows)
    test_rows = make_prompts(4, seed=4)
    write_jsonl(prompts / "test.jsonl", [{**row, "constraints": {"max_words": 3}} for row in test_rows])
    assert main(["pipeline", str(recipe)]) == 0
    run = tmp_path / "run"
    scored = read_stage(run / "scores")
    for row in scored:
        expected = [numeric_answer(text, row["answer"]) + float(len(text.split()) <= 3) for text in row["all_generated_responses"]]
        assert row["all_rm_scores"] == expected
    pairs = [json.loads(line) for split in ("train", "test") for line in (run / "pairs" / f"{split}.jsonl").read_text().splitlines()]
    assert 0 < len(pairs) <= 16
    assert all(pair["chosen"][-1]["content"] != pair["rejected"][-1]["content"] for pair in pairs)
    result = json.loads((run / "pipeline.json").read_text())
    assert result["before"]["prompts"] == 4 and 0 <= result["after"]["accuracy"] <= 2
    assert (run / "model" / "model.safetensors").is_file()
    first_output = capsys.readouterr().out
    assert "held-out prompts: 4" in first_output
    stamps = {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.is_file() and path.name != "pipeline.json"}
    assert main(["pipeline", str(recipe)]) == 0  # everything complete: nothing is redone
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    again = json.loads((run / "pipeline.json").read_text())
    assert again["after"] == result["after"] and again["seconds"]["train"] >= result["seconds"]["train"] > 0


def test_missing_reference_answer_fails_before_generation(tiny_model_dir, tmp_path, capsys):
    folder = tiny_model_dir("llama")
    prompts = tmp_path / "prompts"
    rows = make_prompts(4, seed=3)
    del rows[1]["answer"]
    write_jsonl(prompts / "train.jsonl", rows)
    write_jsonl(prompts / "test.jsonl", make_prompts(2, seed=4))
    assert main(["pipeline", str(_pipeline_recipe(tmp_path, folder, prompts))]) == 2
    assert "row 1: the numeric_answer reward needs a reference number in 'answer'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "generations").exists()
    write_jsonl(prompts / "train.jsonl", make_prompts(4, seed=3))  # answers now, but no test split to evaluate on
    (prompts / "test.jsonl").unlink()
    assert main(["pipeline", str(_pipeline_recipe(tmp_path, folder, prompts))]) == 2
    assert f"evaluate.prompts {prompts} has no split 'test'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "generations").exists()


def test_stage_keys_are_checked_before_any_model_loads(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown key generate.temprature; did you mean generate.temperature\?"):
        load_pipeline(None, ["--model_name_or_path", "m", "--generate.temprature", "0.7"])
    pipeline = load_pipeline(None, ["--model_name_or_path", "m", "--run_dir", str(tmp_path), "--generate.prompts", "p.jsonl"])
    assert pipeline.train.data.dataset_mixer == {str(tmp_path / "pairs"): 1.0}
    assert pipeline.train.training.output_dir == str(tmp_path / "model")
    assert pipeline.generate.seeds == [13, 21, 42, 79, 100] and pipeline.generate.temperature == 0.8
    with pytest.raises(RecipeError, match="repeated seed"):
        load_pipeline(None, ["--model_name_or_path", "m", "--generate.prompts", "p", "--generate.seeds", "[1,1]"]).generate.validate()
    with pytest.raises(RecipeError, match="annotate.rewards is required"):
        load_pipeline(None, ["--model_name_or_path", "m"]).annotate.validate()


def test_nucleus_sampling_keeps_what_transformers_top_p_keeps():
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from simpo.generation.sampling import NucleusSampling

    torch.manual_seed(0)
    peaked = torch.randn(6, 5000) * 6  # nucleus inside the top 256 tokens
    flat = torch.randn(4, 5000) * 0.1  # nucleus of thousands of tokens: the full-sort path
    scores = torch.cat([peaked, flat])
    ours = NucleusSampling(0.8, 0.95)(None, scores)
    reference = TopPLogitsWarper(0.95)(None, TemperatureLogitsWarper(0.8)(None, scores))
    assert torch.equal(torch.isinf(ours), torch.isinf(reference))
    kept = ~torch.isinf(reference)
    assert torch.allclose(ours[kept], reference[kept])
    assert kept[:6].sum(-1).max() < 256 < kept[6:].sum(-1).min()  # both paths were taken


def test_prompts_without_a_prompt_column_are_refused(tmp_path):
    from simpo.generation.prompts import read_prompts

    source = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Say hi."}])
    with pytest.raises(RecipeError, match=r"alpaca.jsonl: rows need a 'prompt' column .* its columns: \['instruction'\]"):
        read_prompts(str(source), "train")


def test_simpo_train_points_a_pipeline_recipe_to_simpo_pipeline(capsys):
    assert main(["train", str(REPO / "recipes" / "smollm2-135m-pipeline.yaml"), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "'run_dir' in" in error and "belongs to a pipeline recipe: run it with `simpo pipeline`" in error


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_asking_for_vllm_without_it_says_what_to_install():
    from simpo.generation.backends import pick_backend

    assert pick_backend("auto") == "transformers"
    with pytest.raises(RecipeError, match="generate.backend vllm needs the vllm package"):
        pick_backend("vllm")
