"""`simpo pipeline`: generate, annotate, binarize, evaluate the initial model, train, evaluate again,
then the model-card benchmarks (`simpo eval`) on both models and the model card (`simpo card`).
With `rounds: N`, generate to evaluate run N times, each round from the previous round's model
(`stages.pipeline_rounds`), and what each round did is printed and drawn in RUN_DIR/rounds.png.

Every stage is skipped when its output is already complete, so the same command continues a run
that was stopped at any point. Everything that can fail on the recipe (keys, reward models,
reference answers of programmatic rewards) fails before the first sample is generated.

RUN_DIR is locked for the whole run (`stages.lock`), so a second pipeline on the same folder stops
at once, and each run's stage seconds and outcome are an entry of `RUN_DIR/pipeline.json`
(`stages.pipeline_record`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..config.pipeline import Pipeline
from ..data.sources import load_split
from ..errors import RecipeError
from ..evals.signals import collapse
from ..generation.prompts import read_prompts
from ..rewards.programmatic import check_references
from ..rewards.reward_model import check_reward_model
from .annotate import run_annotate
from .binarize import STATS as PAIR_STATS
from .binarize import run_binarize
from .card import write_card
from .eval import EvalOptions, run_eval
from .evaluate import run_evaluate
from .generate import run_generate
from .lock import LOCK_FILE, folder_lock
from .pipeline_record import PipelineRecord
from .pipeline_rounds import FIGURE as ROUNDS_FIGURE
from .pipeline_rounds import round_part, round_pipeline, round_record, rounds_table, write_rounds_figure
from .shards import is_complete, mark_complete


def _check_rewards(pipeline: Pipeline):
    for spec in pipeline.annotate.rewards:
        if spec["type"] == "reward_model":
            check_reward_model(spec["model"], spec.get("trust_remote_code") is True)

    def check_prompts(rows) -> None:
        records = [{"row": row.row, **row.extra} for row in rows]
        check_references(pipeline.annotate.rewards, records, pipeline.generate.prompts)
        test_size = pipeline.binarize.test_size
        if test_size >= 1 and test_size >= len(rows):
            raise RecipeError(f"binarize.test_size ({test_size:g}) holds out all {len(rows)} usable prompts of "
                              f"{pipeline.generate.prompts}; leave some for training")
        _check_held_out(pipeline)

    return check_prompts


def _check_held_out(pipeline: Pipeline) -> None:
    """The held-out prompts have what the programmatic rewards score them against."""
    evaluate = pipeline.evaluate
    rows, _ = read_prompts(evaluate.prompts, evaluate.split, evaluate.max_prompts)
    programmatic = [spec for spec in pipeline.annotate.rewards if spec["type"] != "reward_model"]
    check_references(programmatic, [{"row": row.row, **row.extra} for row in rows], f"{evaluate.prompts} [{evaluate.split}]")


def run_pipeline(pipeline: Pipeline) -> dict:
    """Every stage with RUN_DIR locked; its record in RUN_DIR/pipeline.json; the held-out results and this run's seconds."""
    pipeline.validate()
    check_prompts = _check_rewards(pipeline)
    evaluate = pipeline.evaluate
    if load_split(evaluate.prompts, evaluate.split) is None:  # fail now, not after generating and training
        raise RecipeError(f"evaluate.prompts {evaluate.prompts} has no split {evaluate.split!r}: set evaluate.prompts or evaluate.split")
    with folder_lock(pipeline.run_dir) as holder:
        record = PipelineRecord(pipeline.run_dir, holder)
        try:
            results = _stages(pipeline, record, check_prompts)
        except BaseException as error:
            # A run that wrote nothing (it stopped on its input) leaves no record: the lock then
            # removes the folder it made.
            if any(path.name != LOCK_FILE for path in pipeline.run_dir.iterdir()):
                record.fail(error)
            raise
    if "rounds" in results:
        print(f"rounds (round 0: {pipeline.model}; {pipeline.run_dir / ROUNDS_FIGURE}):\n{rounds_table(results['rounds'])}\n")
    print(summary(results, record.run["seconds"], record.path))
    if results["table"]:
        print(f"\nmodel-card benchmarks (simpo eval, in {pipeline.eval.output}):\n{results['table']}")
    print(f"\nmodel card: {results['card']}")
    return {"before": results["before"], "after": results["after"], "seconds": record.run["seconds"],
            **({"rounds": results["rounds"]} if "rounds" in results else {})}


def _stages(pipeline: Pipeline, record: PipelineRecord, check_prompts) -> dict:
    """Every stage of every round, each timed into `record`; the held-out results, the rounds, the
    benchmark table and the card's path."""
    rounds = []
    for k in range(1, pipeline.rounds + 1):
        rounds += _round(pipeline, k, record, check_prompts)
    before, after = rounds[0]["evaluation"], rounds[-1]["evaluation"]
    rounds = [{key: value for key, value in entry.items() if key != "evaluation"} for entry in rounds]
    output_dir = Path(pipeline.train.training.output_dir)
    table = record.timed("eval", lambda: _benchmarks(pipeline, str(output_dir))) if pipeline.eval.benchmarks else None
    results = {"before": before, "after": after}
    if pipeline.rounds > 1:
        results["rounds"] = rounds
        record.record["rounds"] = rounds  # before the card, which lists them
        record.save()
        write_rounds_figure(rounds, pipeline.run_dir / ROUNDS_FIGURE)
    card = write_card(pipeline.run_dir, pipeline.eval.output if table else None)
    record.finish(results)
    return {**results, "table": table, "card": card}


def _round(pipeline: Pipeline, k: int, record: PipelineRecord, check_prompts) -> list[dict]:
    """Round k's stages (with one round, the pipeline's), each timed into `record`; what the round did
    (`round_record`, with its evaluation's summary), after round 0's for the first."""
    from .train import run_training  # imports the trainer: only when training runs

    this = round_pipeline(pipeline, k)
    prefix = "" if pipeline.rounds == 1 else f"round {k} "

    def stage(name, work):
        return record.timed(prefix + name, work)

    rewards = pipeline.annotate.rewards
    stage("generate", lambda: run_generate(this.train.model, this.generate, check_prompts, round_part(pipeline, k)))
    stage("annotate", lambda: run_annotate(this.annotate))
    stage("binarize", lambda: run_binarize(this.binarize))
    done = []
    if k == 1:
        before = stage("evaluate before", lambda: run_evaluate(this.train.model, this.evaluate, rewards, "before"))
        done.append({**round_record(0, before, None), "evaluation": before})
    output_dir = Path(this.train.training.output_dir)
    if not is_complete(output_dir):
        stage("train", lambda: run_training(this.train))
        mark_complete(output_dir)
    trained = dataclasses.replace(this.train.model, model_name_or_path=str(output_dir))
    after = stage("evaluate after", lambda: run_evaluate(trained, this.evaluate, rewards, "after"))
    return done + [{**round_record(k, after, _pair_stats(this)), "evaluation": after}]


def _pair_stats(pipeline: Pipeline) -> dict | None:
    """What binarize said of the round's samples and pairs (its stats.json)."""
    path = Path(pipeline.binarize.output) / PAIR_STATS
    return json.loads(path.read_text()) if path.is_file() else None


def _benchmarks(pipeline: Pipeline, trained: str) -> str:
    """The model-card benchmarks of the initial and the trained model, one table row each."""
    settings = pipeline.eval
    options = EvalOptions(
        models=[pipeline.model, trained], names=["base", pipeline.train.training.loss_type], benchmarks=settings.benchmarks,
        limit=settings.limit, judge=settings.judge, judge_base_url=settings.judge_base_url,
        judge_max_length=settings.judge_max_length, judge_batch_size=settings.judge_batch_size,
        judge_max_tokens=settings.judge_max_tokens, output=Path(settings.output),
        data=settings.data, mmlu_mode=settings.mmlu_mode, batch_size=settings.batch_size, dtype=settings.dtype,
        max_new_tokens=settings.max_new_tokens, zeroeval_dir=settings.zeroeval_dir, alpaca_eval_gamed=settings.alpaca_eval_gamed,
        arena_hard_dir=settings.arena_hard_dir,
    )
    return run_eval(options)


def _share(value) -> str:
    return f"{value:>10.0%}" if value is not None else f"{'?':>10}"


def _examples(before: dict, after: dict) -> list[str]:
    """The first held-out answers of both models, one line each, cut to 160 characters."""
    def line(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= 160 else text[:157] + "..."

    lines = []
    for number, (old, new) in enumerate(zip(before.get("examples", []), after.get("examples", [])), start=1):
        prompt = old["prompt"] if isinstance(old["prompt"], str) else old["prompt"][-1]["content"]
        lines += [f"example {number}: {line(prompt)}", f"  before: {line(old['response'])}", f"  after:  {line(new['response'])}"]
    return lines


def summary(results: dict, seconds: dict[str, float], record: Path) -> str:
    before, after = results["before"], results["after"]
    lines = [
        f"held-out prompts: {after['prompts']} (greedy answers)",
        f"{'':<24}{'before':>10}{'after':>10}",
        f"{'accuracy':<24}{before['accuracy']:>10.4f}{after['accuracy']:>10.4f}",
        f"{'mean length (tokens)':<24}{before['mean_length_tokens']:>10.1f}{after['mean_length_tokens']:>10.1f}",
        f"{'repeat themselves':<24}{_share(before.get('repetitive'))}{_share(after.get('repetitive'))}",
        f"{'hit the token limit':<24}{_share(before.get('truncated'))}{_share(after.get('truncated'))}",
        *_examples(before, after),
        "stage seconds of this run: " + ", ".join(f"{name} {s:.0f}" for name, s in seconds.items()),
        f"(every run of this folder, with its stage seconds, is in {record})",
    ]
    warning = collapse(before, after)
    if warning:
        lines.append(warning)
    return "\n".join(lines)
