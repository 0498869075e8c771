"""`simpo eval` on a tiny model: results equal to the records they summarize, AlpacaEval's official
output format, answers reused across judges, a killed run resumed without regenerating, bad options."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys

import pytest
from helpers import REPO, wait_for

from simpo.errors import RecipeError
from simpo.evals import benchmarks
from simpo.evals.protocol import CARD
from simpo.evals.table import load_results
from simpo.evals.winrate import length_controlled_v1, win_rate
from simpo.evals.zeroeval import multiple_choice_prompt, open_question_prompt, score_choice, score_open
from simpo.generation.prompts import PromptRenderer
from simpo.stages.eval import parse_options, run_eval


def _options(model, out, *extra):
    return parse_options([str(model), "--output", str(out), "--max-new-tokens", "12", "--batch-size", "4", *extra])


def test_zeroeval_results_equal_a_rescoring_of_their_records(tiny_model_dir, tmp_path, one_thread):
    model = tiny_model_dir("llama")
    table = run_eval(_options(model, tmp_path, "--benchmarks", "gsm,mmlu", "--limit", "5", "--names", "tiny"))
    results = load_results(tmp_path)["tiny"]
    from transformers import AutoTokenizer

    renderer = PromptRenderer(AutoTokenizer.from_pretrained(model))
    asked = {"gsm": lambda item: open_question_prompt(item["question"]),
             "mmlu": lambda item: multiple_choice_prompt(item["question"], item["choices"])}
    for benchmark, rescore, key in (("gsm", score_open, "reference"), ("mmlu", score_choice, "answer")):
        result = results[benchmark]
        records = [json.loads(line) for line in (tmp_path / "tiny" / benchmark / "records.jsonl").read_text().splitlines()]
        assert result["n"] == len(records) == 5 and result["judge"] is None and result["comparable"] is False
        items = {item["id"]: item for item in (benchmarks.gsm("offline", 42) if benchmark == "gsm" else benchmarks.mmlu("offline"))[1]}
        again = [rescore(record["output"], items[record["id"]][key]) for record in records]
        assert result["metrics"]["accuracy"] == pytest.approx(100 * sum(row["correct"] for row in again) / 5)
        answered = [row for row in again if row["answer"] is not None]
        expected_length = sum(len(row["reasoning"]) for row in answered) / len(answered) if answered else None
        assert result["metrics"]["length"] == pytest.approx(expected_length)
        assert result["protocol"]["prompt"] == "simpo's wording of ZeroEval's layout"
        # each record keeps the exact text the model read: the prompt under the chat template
        assert [record["prompt"] for record in records] == [
            renderer.text([{"role": "user", "content": asked[benchmark](items[record["id"]])}]) for record in records]
        assert all(record["prompt"].startswith("<|im_start|>") and record["prompt"].endswith("<|im_start|>assistant\n") for record in records)
    assert table.splitlines()[0] == "| Model | AE2 LC | AE2 WR | AE2 Length | AH | AH Length | GSM | GSM Length | MMLU | MMLU Length |"
    assert table.splitlines()[2].startswith("| tiny | - | - | - | - | - | ")
    assert "GSM-Symbolic (reasoning-gym, seed 42): 5 of 1319 items" in table
    assert (tmp_path / "results.md").read_text().strip() == table.strip()


def test_zeroeval_dir_prompts_in_the_checkouts_words_and_a_bad_one_fails_before_any_model_loads(tiny_model_dir, tmp_path, one_thread):
    model = tiny_model_dir("llama")
    templates = tmp_path / "ZeroEval" / "src" / "templates"
    templates.mkdir(parents=True)
    (templates / "OEQA.py").write_text('OEQA = "Solve: {question}"\n')
    (templates / "MCQA.py").write_text('MCQA = "Pick: {question}\\n{choices}"\n')
    out = tmp_path / "out"
    run_eval(_options(model, out, "--benchmarks", "mmlu", "--limit", "2", "--names", "tiny", "--zeroeval-dir", str(tmp_path / "ZeroEval")))
    result = json.loads((out / "tiny" / "mmlu" / "result.json").read_text())
    records = [json.loads(line) for line in (out / "tiny" / "mmlu" / "records.jsonl").read_text().splitlines()]
    items = {item["id"]: item for item in benchmarks.mmlu("offline")[1]}
    assert result["protocol"]["prompt"] == "ZeroEval's templates" and "prompt" not in " ".join(result["differences"])
    for record in records:
        item = items[record["id"]]
        asked = f"Pick: {item['question']}\n" + "".join(f"- ({letter}) {choice}\n" for letter, choice in zip("ABCD", item["choices"]))
        assert asked in record["prompt"]
    (templates / "OEQA.py").unlink()
    with pytest.raises(RecipeError, match="OEQA.py is missing"):
        run_eval(_options(model, out, "--benchmarks", "gsm", "--zeroeval-dir", str(tmp_path / "ZeroEval")))


def test_alpaca_eval_writes_the_official_outputs_format_and_a_new_judge_reuses_the_answers(tiny_model_dir, tmp_path, one_thread):
    model = tiny_model_dir("llama")
    run_eval(_options(model, tmp_path, "--benchmarks", "alpaca_eval", "--limit", "4", "--names", "tiny", "--judge", f"local:{model}"))
    folder = tmp_path / "tiny" / "alpaca_eval"
    outputs = json.loads((folder / "model_outputs.json").read_text())
    assert [sorted(row) for row in outputs] == [["dataset", "generator", "instruction", "output"]] * 4
    assert {row["generator"] for row in outputs} == {"tiny"}
    result = json.loads((folder / "result.json").read_text())
    preferences = [json.loads(line)["preference"] for line in (folder / "records.jsonl").read_text().splitlines()]
    assert result["metrics"]["wr"] == pytest.approx(win_rate(preferences)["win_rate"])
    assert result["metrics"]["length"] == pytest.approx(sum(len(row["output"]) for row in outputs) / 4)
    assert result["judge"] == f"local:{model}" and result["comparable"] is False
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    assert all(row["instruction"] in record["prompt"] for row, record in zip(outputs, records))

    reward = tmp_path / "reward"
    _tiny_reward_model(model, reward)
    run_eval(_options(model, tmp_path, "--benchmarks", "alpaca_eval", "--limit", "4", "--names", "tiny", "--judge", f"reward:{reward}"))
    assert len(list(folder.glob("answers-*"))) == 1 and len(list(folder.glob("judged-*"))) == 2
    assert json.loads((folder / "model_outputs.json").read_text()) == outputs
    assert json.loads((folder / "result.json").read_text())["judge"] == f"reward:{reward}"


def _tiny_reward_model(policy, folder):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(policy)
    config = LlamaConfig.from_pretrained(policy, num_labels=1)
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(1)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _gamed_file(path, slope: float) -> None:
    """A df_gamed.csv in alpaca_eval's layout (two gamed baselines, 805 instructions each)."""
    lines = ["model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline"]
    for model, shift in (("gpt4_1106_preview_verbose", -1.0), ("gpt4_1106_preview_concise", 1.0)):
        for index in range(805):
            difficulty, std_delta_len = (index % 7 - 3) / 3, shift + (index % 5 - 2) / 4
            preference = 1 / (1 + math.exp(slope * math.tanh(std_delta_len) + difficulty + (index % 3 - 1) / 2))
            lines.append(f"{model},{index},{preference},{std_delta_len},{difficulty},False")
    path.write_text("\n".join(lines) + "\n")


def test_alpaca_eval_lc_is_length_controlled_v1_with_a_gamed_file_rescored_without_asking_the_judge_again(tiny_model_dir, tmp_path, one_thread):
    model = tiny_model_dir("llama")
    folder, gamed = tmp_path / "tiny" / "alpaca_eval", tmp_path / "df_gamed.csv"
    args = ["--benchmarks", "alpaca_eval", "--limit", "4", "--names", "tiny", "--judge", f"local:{model}"]
    with pytest.raises(RecipeError, match=f"--alpaca-eval-gamed {gamed}: no such file"):
        parse_options([str(model), *args, "--alpaca-eval-gamed", str(gamed)])
    gamed.write_text("model,index,preference\nm,0,0.5\n")
    with pytest.raises(RecipeError, match=f"^{gamed}: no column 'instruction_difficulty'"):  # before any model loads
        run_eval(_options(model, tmp_path, *args, "--alpaca-eval-gamed", str(gamed)))
    assert not folder.exists()

    run_eval(_options(model, tmp_path, *args))
    minimal = json.loads((folder / "result.json").read_text())
    assert minimal["protocol"]["lc"] == "length_controlled_minimal" and minimal["judge_counters"]["requests"] == 4
    assert minimal["protocol"]["order"] == CARD["alpaca_eval"]["order"] and "order" not in " ".join(minimal["differences"])

    lcs = []
    for slope in (0.8, -0.8):  # a changed file at the same path is scored again, never read back stale
        _gamed_file(gamed, slope)
        run_eval(_options(model, tmp_path, *args, "--alpaca-eval-gamed", str(gamed)))
        result = json.loads((folder / "result.json").read_text())
        assert result["protocol"]["lc"] == "length_controlled_v1" and not any("lc " in d for d in result["differences"])
        records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
        references = {item["id"]: item["reference"] for item in benchmarks.alpaca_eval("offline")[1]}
        expected = length_controlled_v1([r["preference"] for r in records], [len(r["output"]) for r in records],
                                        [len(references[r["id"]]) for r in records], [r["id"] for r in records],
                                        benchmarks.alpaca_eval_gamed("offline", str(gamed))[2])
        assert result["metrics"]["lc"] == pytest.approx(expected["length_controlled_winrate"], rel=1e-12)
        # The same judgments, scored again: the judge is not asked again.
        assert result["metrics"]["wr"] == minimal["metrics"]["wr"] and result["judge_counters"] == {}
        lcs.append(result["metrics"]["lc"])
    assert lcs[0] != pytest.approx(lcs[1]) and len(list(folder.glob("judged-*"))) == len(list(folder.glob("answers-*"))) == 1
    run_eval(_options(model, tmp_path, *args))  # without the file: length_controlled_minimal again, the same number
    assert json.loads((folder / "result.json").read_text())["metrics"] == minimal["metrics"]


def test_a_killed_eval_resumes_without_regenerating_finished_shards(tiny_model_dir, tmp_path, one_thread):
    model = tiny_model_dir("llama")
    args = [str(model), "--output", str(tmp_path), "--benchmarks", "gsm", "--limit", "6", "--shard-size", "1",
            "--max-new-tokens", "48", "--batch-size", "1", "--names", "tiny"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen([sys.executable, "-m", "simpo.cli", "eval", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answers = tmp_path / "tiny" / "gsm"
    wait_for(lambda: any(answers.glob("answers-*/shard-00001.jsonl")), "second shard")
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = {path.name: (path.stat().st_mtime_ns, path.read_text()) for path in answers.glob("answers-*/shard-*.jsonl")}
    assert len(done) >= 2

    run_eval(parse_options(args))
    shards = sorted(answers.glob("answers-*/shard-*.jsonl"))
    assert len(shards) == 6
    for path in shards:  # the shards written before the kill are the same files, untouched
        if path.name in done:
            assert (path.stat().st_mtime_ns, path.read_text()) == done[path.name]
    assert json.loads((answers / "result.json").read_text())["n"] == 6


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(RecipeError, match="--benchmarks takes names of alpaca_eval, arena_hard, gsm, mmlu"):
        parse_options(["m", "--benchmarks", "gsm,humaneval"])
    with pytest.raises(RecipeError, match="--names has 1 labels for 2 models"):
        parse_options(["a", "b", "--names", "x"])
    with pytest.raises(RecipeError, match="row labels must differ"):
        parse_options(["a/model", "b/model"])
    with pytest.raises(RecipeError, match="--limit: must be a positive whole number, got 0"):
        parse_options(["m", "--limit", "0"])
    with pytest.raises(RecipeError, match=f"model {tmp_path}/missing: no such model folder"):
        run_eval(parse_options([str(tmp_path / "missing"), "--output", str(tmp_path / "out")]))
    with pytest.raises(RecipeError, match="judge 'gpt4' is not a judge: write openai:MODEL"):
        run_eval(parse_options(["smollm2-135m-instruct", "--judge", "gpt4", "--output", str(tmp_path / "out")]))


def test_a_row_label_is_a_plain_name_never_a_path(tmp_path):
    (tmp_path / "run" / "model").mkdir(parents=True)
    # a model path that ends in `..` is labelled by the folder it resolves to
    assert parse_options([f"{tmp_path}/run/model/.."]).names == ["run"]
    assert parse_options([f"{tmp_path}/run/model/"]).names == ["model"]
    for names in ("../../x", "/abs/path", "..", ".", "a\\b"):
        with pytest.raises(RecipeError, match=f"--names gives {re.escape(repr(names))}: a row label is a plain name"):
            parse_options(["m", "--names", names])
