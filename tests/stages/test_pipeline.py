"""`simpo pipeline` end to end on a tiny random Llama: every stage's output is what its inputs
determine, a second run redoes nothing, what can fail on the prompts fails before generating, a run
folder another process holds is refused, and every run, failed ones too, is an entry of pipeline.json."""

import contextlib
import io
import json
import os
from types import SimpleNamespace

import pytest
from helpers import PIPELINE_SEEDS, lock_holder, pipeline_recipe, read_jsonl, write_jsonl

import simpo.stages.pipeline
from simpo.cli import main
from simpo.data.bundled import make_prompts
from simpo.rewards.programmatic import numeric_answer
from simpo.stages.shards import read_stage

SEEDS = PIPELINE_SEEDS
# The files that record the seconds spent, which a second run rewrites: the pipeline's record and the card.
RETIMED = {"pipeline.json", "README.md"}


def expected_score(text: str, answer) -> float:
    """The recipe's rewards written out: numeric_answer plus constraints {max_words: 3} (one constraint)."""
    return numeric_answer(text, answer) + float(len(text.split()) <= 3)


@pytest.fixture(scope="module")
def pipeline_run(tiny_model_dir, tmp_path_factory):
    """One pipeline run on 16 prompts (4 held out), then the same command again; what both left."""
    tmp_path = tmp_path_factory.mktemp("pipeline")
    folder = tiny_model_dir("llama")
    prompts = tmp_path / "prompts"
    # A tiny random model rarely writes the right number; a word limit separates its responses too.
    write_jsonl(prompts / "train.jsonl", [{**row, "constraints": {"max_words": 3}} for row in make_prompts(16, seed=3)])
    write_jsonl(prompts / "test.jsonl", [{**row, "constraints": {"max_words": 3}} for row in make_prompts(4, seed=4)])
    recipe = pipeline_recipe(tmp_path, folder, prompts, annotate={"rewards": [{"type": "numeric_answer"}, {"type": "constraints"}]},
                              eval={"benchmarks": ["gsm", "mmlu"], "limit": 2, "max_new_tokens": 8, "mmlu_mode": "loglik", "batch_size": 4})
    run = tmp_path / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["pipeline", str(recipe)]) == 0
    result = json.loads((run / "pipeline.json").read_text())
    files = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in run.rglob("*") if path.is_file() and path.name not in RETIMED}
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["pipeline", str(recipe)]) == 0  # everything complete: nothing is redone
    again = json.loads((run / "pipeline.json").read_text())
    return SimpleNamespace(model=folder, run=run, result=result, again=again, printed=printed.getvalue(), files=files)


def test_annotate_scores_each_response_with_the_sum_of_its_rewards(pipeline_run):
    scored = read_stage(pipeline_run.run / "scores")
    assert [row["row"] for row in scored] == list(range(16))
    for row in scored:
        assert len(row["all_generated_responses"]) == len(SEEDS)
        assert row["all_rm_scores"] == [expected_score(text, row["answer"]) for text in row["all_generated_responses"]]


def test_binarize_pairs_the_best_and_worst_response_of_each_prompt_they_differ_on(pipeline_run):
    expected = {}  # prompt_id: (chosen, rejected), the first of equal scores, where the two differ
    for row in read_stage(pipeline_run.run / "scores"):
        texts, scores = row["all_generated_responses"], row["all_rm_scores"]
        best, worst = texts[scores.index(max(scores))], texts[scores.index(min(scores))]
        if max(scores) > min(scores) and best.strip() != worst.strip():
            expected[row["prompt_id"]] = (best, worst)
    assert expected, "no prompt's responses differ in score: the case tests nothing"
    splits = {split: read_jsonl(pipeline_run.run / "pairs" / f"{split}.jsonl") for split in ("train", "test")}
    pairs = {pair["prompt_id"]: (pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]) for rows in splits.values() for pair in rows}
    assert pairs == expected
    assert len(splits["train"]) + len(splits["test"]) == len(expected)  # no pair twice
    assert len(splits["test"]) == round(0.2 * len(expected))  # binarize.test_size 0.2


@pytest.mark.parametrize("name", ["before", "after"])
def test_evaluation_accuracy_is_the_mean_score_of_the_greedy_held_out_answers(name, pipeline_run):
    answers = read_jsonl(pipeline_run.run / "eval" / f"{name}.jsonl")
    assert [row["row"] for row in answers] == [0, 1, 2, 3]  # the 4 held-out prompts
    assert [row["answer"] for row in answers] == [row["answer"] for row in make_prompts(4, seed=4)]
    for row in answers:
        assert row["score"] == expected_score(row["response"], row["answer"])
    summary = pipeline_run.result[name]
    assert summary["prompts"] == 4 and summary["skipped"] == 0
    assert summary["accuracy"] == pytest.approx(sum(row["score"] for row in answers) / 4, abs=1e-12)
    trained = pipeline_run.run / "model"
    assert summary["model"] == str(pipeline_run.model if name == "before" else trained)
    assert (trained / "model.safetensors").is_file()


def test_every_response_records_its_tokens_and_whether_it_hit_the_limit(pipeline_run):
    from simpo.evals.signals import repeats_itself

    generated = read_stage(pipeline_run.run / "generations")
    flags = [(tokens, cut) for row in generated for tokens, cut in zip(row["response_tokens"], row["truncated"])]
    assert len(flags) == 16 * len(SEEDS)
    # max_new_tokens 8: a response that hit it has 8 tokens and no stop token; one that stopped, fewer than 8.
    assert all((tokens == 8) if cut else (tokens < 8) for tokens, cut in flags)
    stats = json.loads((pipeline_run.run / "pairs" / "stats.json").read_text())
    assert stats["truncated"] == sum(cut for _, cut in flags) and stats["responses"] == len(flags)
    for name in ("before", "after"):
        answers = read_jsonl(pipeline_run.run / "eval" / f"{name}.jsonl")
        assert [row["repeats"] for row in answers] == [repeats_itself(row["response"]) for row in answers]
        summary = pipeline_run.result[name]
        assert summary["repetitive"] == sum(row["repeats"] for row in answers) / 4
        assert summary["truncated"] == sum(row["truncated"] for row in answers) / 4
        assert summary["examples"] == [{"prompt": row["prompt"], "response": row["response"]} for row in answers[:3]]


def test_the_summary_prints_both_evaluations(pipeline_run):
    before, after = pipeline_run.result["before"], pipeline_run.result["after"]
    assert "held-out prompts: 4 (greedy answers)" in pipeline_run.printed
    assert f"{'accuracy':<24}{before['accuracy']:>10.4f}{after['accuracy']:>10.4f}" in pipeline_run.printed
    assert f"{'repeat themselves':<24}{before['repetitive']:>10.0%}{after['repetitive']:>10.0%}" in pipeline_run.printed
    assert "example 3: " in pipeline_run.printed and "example 4: " not in pipeline_run.printed


def test_the_model_card_benchmarks_of_both_models_end_the_run(pipeline_run):
    from simpo.evals.table import load_results

    results = load_results(pipeline_run.run / "benchmarks")
    assert list(results) == ["base", "simpo"]
    assert results["simpo"]["gsm"]["model"] == str(pipeline_run.run / "model") and results["base"]["mmlu"]["n"] == 2
    table = (pipeline_run.run / "benchmarks" / "results.md").read_text()
    assert table.strip() in pipeline_run.printed
    card = (pipeline_run.run / "model" / "README.md").read_text()
    assert [line for line in card.splitlines() if line.startswith("| simpo |")] == [line for line in table.splitlines() if line.startswith("| simpo |")]


def test_a_second_run_redoes_nothing(pipeline_run):
    run, result, again = pipeline_run.run, pipeline_run.result, pipeline_run.again
    now = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in run.rglob("*") if path.is_file() and path.name not in RETIMED}
    assert now == pipeline_run.files  # the same files, none rewritten
    assert (again["before"], again["after"]) == (result["before"], result["after"])
    # One entry per run: the first kept as it was, the second without training (it did not run again).
    [first] = result["runs"]
    assert again["runs"][0] == first
    assert [run["status"] for run in again["runs"]] == ["finished", "finished"]
    stages = ["generate", "annotate", "binarize", "evaluate before", "train", "evaluate after", "eval"]
    assert list(first["seconds"]) == stages and first["seconds"]["train"] > 0
    assert list(again["runs"][1]["seconds"]) == [stage for stage in stages if stage != "train"]
    assert f"stage seconds of this run: {', '.join(f'{name} {s:.0f}' for name, s in first['seconds'].items())}" in pipeline_run.printed


def test_a_missing_reference_answer_fails_before_generation(tiny_model_dir, tmp_path, capsys):
    folder = tiny_model_dir("llama")
    prompts = tmp_path / "prompts"
    rows = make_prompts(4, seed=3)
    del rows[1]["answer"]
    write_jsonl(prompts / "train.jsonl", rows)
    write_jsonl(prompts / "test.jsonl", make_prompts(2, seed=4))
    assert main(["pipeline", str(pipeline_recipe(tmp_path, folder, prompts))]) == 2
    assert "row 2: the numeric_answer reward needs a reference number in 'answer'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nor a lock file or a record of the run


def test_prompts_without_a_test_split_fail_before_generation(tiny_model_dir, tmp_path, capsys):
    folder = tiny_model_dir("llama")
    prompts = tmp_path / "prompts"
    write_jsonl(prompts / "train.jsonl", make_prompts(4, seed=3))  # answers, but no test split to evaluate on
    assert main(["pipeline", str(pipeline_recipe(tmp_path, folder, prompts))]) == 2
    assert f"evaluate.prompts {prompts} has no split 'test'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "generations").exists()


def test_a_run_folder_another_process_holds_is_refused_at_once(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts"
    write_jsonl(prompts / "train.jsonl", make_prompts(4, seed=3))
    write_jsonl(prompts / "test.jsonl", make_prompts(2, seed=4))
    run = tmp_path / "run"
    with lock_holder(run) as holder:
        assert main(["pipeline", str(pipeline_recipe(tmp_path, tiny_model_dir("llama"), prompts))]) == 2
        err = capsys.readouterr().err
        assert f"simpo: error: {run} is being written by pid {holder.pid} on " in err, err
        assert [path.name for path in run.iterdir()] == [".simpo-lock"]


def test_a_failed_run_keeps_its_stage_seconds_and_each_run_is_an_entry(tiny_model_dir, tmp_path, monkeypatch, capsys):
    prompts = tmp_path / "prompts"
    write_jsonl(prompts / "train.jsonl", make_prompts(4, seed=3))
    write_jsonl(prompts / "test.jsonl", make_prompts(2, seed=4))
    recipe = str(pipeline_recipe(tmp_path, tiny_model_dir("llama"), prompts))
    record = tmp_path / "run" / "pipeline.json"

    def run_annotate(config):
        raise RuntimeError("the disk is full\n(details)")

    monkeypatch.setattr(simpo.stages.pipeline, "run_annotate", run_annotate)
    with pytest.raises(RuntimeError, match="the disk is full"):
        main(["pipeline", recipe])
    [first] = json.loads(record.read_text())["runs"]
    assert (first["status"], first["failed_stage"], first["error"]) == ("failed", "annotate", "RuntimeError: the disk is full")
    assert list(first["seconds"]) == ["generate", "annotate"] and first["seconds"]["generate"] > 0
    assert first["pid"] == os.getpid()  # an entry starts as the holder record of the run folder's lock
    assert not (tmp_path / "run" / ".simpo-lock").exists()

    monkeypatch.undo()  # a real failure: the tiny model's answers all score 0, so binarize finds no pair
    assert main(["pipeline", recipe]) == 2
    assert "simpo: error: binarize: no prompt of" in capsys.readouterr().err
    runs = json.loads(record.read_text())["runs"]
    assert runs[0] == first  # the earlier run's entry as it was, no seconds added to it
    assert [(run["status"], run["failed_stage"]) for run in runs] == [("failed", "annotate"), ("failed", "binarize")]
    assert runs[1]["error"].startswith("RecipeError: binarize: no prompt of")
    assert list(runs[1]["seconds"]) == ["generate", "annotate", "binarize"]
