"""`simpo pipeline` with `rounds: 2` on a tiny random Llama: round 2 samples from and trains round 1's
model (its generations and its saved tensors equal those made from round 1's model by hand), `split`
gives no prompt to two rounds, a run stopped between rounds continues with the same command without
redoing round 1, and the rounds are printed, drawn, recorded and listed in the card."""

import contextlib
import dataclasses
import io
import json
from types import SimpleNamespace

import pytest
import torch
import yaml
from helpers import pipeline_recipe, write_jsonl
from safetensors.torch import load_file

from simpo.cli import main
from simpo.config.pipeline import load_pipeline
from simpo.data.bundled import make_prompts
from simpo.errors import RecipeError
from simpo.stages.shards import ShardedOutput, read_stage


def _recipe(tmp_path, model, prompts, **extra):
    # A tiny random model rarely writes the right number; a word limit (its 8 tokens make 4 to 8 words) separates its responses.
    return pipeline_recipe(tmp_path, model, prompts, rounds=2, prompts_per_round="split", binarize={"test_size": 0},
                           annotate={"rewards": [{"type": "numeric_answer"}, {"type": "constraints"}]}, **extra)


@pytest.fixture(scope="module")
def rounds_run(tiny_model_dir, tmp_path_factory):
    """Two rounds on 12 prompts (6 a round), killed inside round 2's generate once its first shard of
    two is written, then the same command again."""
    tmp_path = tmp_path_factory.mktemp("rounds")
    prompts = tmp_path / "prompts"
    write_jsonl(prompts / "train.jsonl", [{**row, "constraints": {"max_words": 6}} for row in make_prompts(12, seed=3)])
    write_jsonl(prompts / "test.jsonl", [{**row, "constraints": {"max_words": 6}} for row in make_prompts(3, seed=4)])
    recipe = _recipe(tmp_path, tiny_model_dir("llama"), prompts)
    run = tmp_path / "run"

    write = ShardedOutput.write

    def killed_in_round_2(output, index, rows):
        write(output, index, rows)
        if output.folder == run / "round-2" / "generations":
            raise KeyboardInterrupt  # as a kill inside round 2's generate leaves the folder: one shard written

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()):
        patch.setattr(ShardedOutput, "write", killed_in_round_2)
        with pytest.raises(KeyboardInterrupt):
            main(["pipeline", str(recipe)])
    written = {path.name: path.stat().st_mtime_ns for path in (run / "round-2" / "generations").glob("shard-*")}
    round_1 = {path: path.stat().st_mtime_ns for path in (run / "round-1").rglob("*") if path.is_file()}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["pipeline", str(recipe)]) == 0
    return SimpleNamespace(run=run, recipe=recipe, prompts=prompts, round_1=round_1, written=written, printed=printed.getvalue(),
                           record=json.loads((run / "pipeline.json").read_text()))


def test_split_gives_no_prompt_to_two_rounds(rounds_run):
    rounds = [[row["prompt_id"] for row in read_stage(rounds_run.run / f"round-{k}" / "generations")] for k in (1, 2)]
    assert [len(ids) for ids in rounds] == [6, 6]
    assert not set(rounds[0]) & set(rounds[1])
    assert [row["row"] for k in (1, 2) for row in read_stage(rounds_run.run / f"round-{k}" / "generations")] == list(range(12))


def test_round_2_samples_from_round_1s_model(rounds_run):
    from simpo.stages.generate import run_generate
    from simpo.stages.pipeline_rounds import round_part, round_pipeline

    run = rounds_run.run
    assert json.loads((run / "round-2" / "generations" / "manifest.json").read_text())["model"] == str(run / "round-1" / "model")
    pipeline = load_pipeline(str(rounds_run.recipe), [])
    second = round_pipeline(pipeline, 2)
    assert second.train.model.model_name_or_path == str(run / "round-1" / "model")
    by_hand = run.parent / "by-hand-generations"
    run_generate(second.train.model, dataclasses.replace(second.generate, output=str(by_hand)), None, round_part(pipeline, 2))
    assert [row["all_generated_responses"] for row in read_stage(by_hand)] == \
        [row["all_generated_responses"] for row in read_stage(run / "round-2" / "generations")]


def test_round_2_trains_from_round_1s_weights(rounds_run):
    from simpo.config.recipe import build_recipe
    from simpo.stages.train import run_training

    run = rounds_run.run
    recipe = yaml.safe_load(rounds_run.recipe.read_text())
    base = load_file(f"{recipe['model_name_or_path']}/model.safetensors")
    first, final = load_file(run / "round-1" / "model" / "model.safetensors"), load_file(run / "model" / "model.safetensors")
    assert any(not torch.equal(base[name], first[name]) for name in base)  # round 1 moved the weights
    assert yaml.safe_load((run / "model" / "recipe.yaml").read_text())["model_name_or_path"] == str(run / "round-1" / "model")
    # `simpo train` by hand from round 1's model on round 2's pairs: the same tensors as the final model.
    values = {key: value for key, value in recipe.items() if key not in ("run_dir", "rounds", "prompts_per_round", "generate",
                                                                        "annotate", "binarize", "evaluate", "eval")}
    by_hand = run.parent / "by-hand-model"
    run_training(build_recipe({**values, "model_name_or_path": str(run / "round-1" / "model"),
                               "dataset_mixer": {str(run / "round-2" / "pairs"): 1.0}, "output_dir": str(by_hand)}))
    again = load_file(by_hand / "model.safetensors")
    assert set(again) == set(final)
    assert all(torch.allclose(again[name], final[name], atol=1e-6, rtol=0) for name in final)
    assert any(not torch.equal(first[name], final[name]) for name in first)  # and round 2 moved them again


def test_a_run_killed_inside_round_2_continues_without_redoing_finished_work_or_losing_rows(rounds_run):
    run, record = rounds_run.run, rounds_run.record
    now = {path: path.stat().st_mtime_ns for path in (run / "round-1").rglob("*") if path.is_file()}
    assert now == rounds_run.round_1  # nothing of round 1 written again
    assert len(rounds_run.written) == 1  # killed with one of round 2's two shards written; that shard is kept as it was
    assert {name: (run / "round-2" / "generations" / name).stat().st_mtime_ns for name in rounds_run.written} == rounds_run.written
    rows = read_stage(run / "round-2" / "generations")
    assert len(rows) == 6 and len({row["prompt_id"] for row in rows}) == 6
    first, second = record["runs"]
    assert first["status"] == "failed" and first["failed_stage"] == "round 2 generate"
    assert list(first["seconds"]) == ["round 1 generate", "round 1 annotate", "round 1 binarize", "round 1 evaluate before",
                                      "round 1 train", "round 1 evaluate after", "round 2 generate"]
    assert second["status"] == "finished"
    assert list(second["seconds"]) == ["round 1 generate", "round 1 annotate", "round 1 binarize", "round 1 evaluate before",
                                       "round 1 evaluate after", "round 2 generate", "round 2 annotate", "round 2 binarize",
                                       "round 2 train", "round 2 evaluate after"]  # round 1's stages found complete, no training
    assert not (run / "generations").exists() and (run / "model" / "model.safetensors").is_file()


def test_each_round_is_printed_drawn_recorded_and_carded(rounds_run):
    run, record = rounds_run.run, rounds_run.record
    rounds = record["rounds"]
    assert [entry["round"] for entry in rounds] == [0, 1, 2]
    assert record["before"] == json.loads((run / "round-1" / "eval" / "before.json").read_text())
    assert record["after"] == json.loads((run / "round-2" / "eval" / "after.json").read_text())
    for entry in rounds[1:]:
        stats = json.loads((run / f"round-{entry['round']}" / "pairs" / "stats.json").read_text())
        assert (entry["pair_share"], entry["mean_score"], entry["chosen_length"]) == (stats["pair_share"], stats["mean_score"],
                                                                                      stats["chosen_length"])
    assert rounds[2]["accuracy"] == record["after"]["accuracy"] and rounds[0]["model"] == yaml.safe_load(
        rounds_run.recipe.read_text())["model_name_or_path"]
    assert (run / "rounds.png").read_bytes()[:4] == b"\x89PNG"
    assert "rounds (round 0: " in rounds_run.printed and "\n2      " in rounds_run.printed
    card = (run / "model" / "README.md").read_text()
    assert "Training ran in 2 on-policy rounds" in card and card.count("\n| 1 | ") == 1


def test_folders_a_round_sets_itself_are_refused(tmp_path):
    with pytest.raises(RecipeError, match=r"generate.output with rounds: 2: each round writes its own folders"):
        load_pipeline(None, ["--model_name_or_path", "m", "--rounds", "2", "--generate.prompts", "p", "--generate.output", "x"])
    pipeline = load_pipeline(None, ["--model_name_or_path", "m", "--rounds", "2", "--generate.prompts", "p",
                                    "--annotate.rewards", "[{type: numeric_answer}]", "--eval.benchmarks", "[]",
                                    "--loss_type", "dpo", "--ref_model_name_or_path", "r"])
    with pytest.raises(RecipeError, match="ref_model_name_or_path with rounds: 2: say which model each round compares with"):
        pipeline.validate()
