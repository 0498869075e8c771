"""`simpo eval MODEL [MODEL ...]`: the benchmarks of the SimPO model cards, resumable, and their table.

For each model and benchmark, under `OUTPUT/NAME/BENCHMARK/`:
- `answers-HASH/`: the model's outputs, in shards written whole (`stages.shards`), HASH naming the
  model, items and decoding settings, so a killed run continues where it stopped and other
  settings never mix with these;
- `judged-HASH/` (AlpacaEval, Arena-Hard): the judge's verdicts on those answers, in shards too,
  HASH adding the judge; `result.json` there is the finished result, and a rerun with the same
  settings reads it instead of recomputing (one whose scoring alone differs, e.g. another
  `--alpaca-eval-gamed` file, scores the same judgments again);
- `result.json`: the newest finished result, which `evals.table` reads (schema there);
  `records.jsonl`: one line per item (the prompt text the model read, output, extracted answer or verdicts);
  AlpacaEval's `model_outputs.json` is in the format the official `alpaca_eval` tool reads.
The table (`OUTPUT/results.md`) is printed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..config.judge import check_judge_ready, judge_kind
from ..config.recipe import ModelConfig
from ..config.recipe_kind import MODEL_FILES
from ..errors import OptionParser, RecipeError
from ..evals.arena_hard import token_counts
from ..evals.benchmarks import subset
from ..evals.protocol import decoding_text, differences
from ..evals.table import BENCHMARKS, load_results, markdown_table
from ..evals.tasks import task_for
from ..generation.backends import open_backend, pick_backend, sampling_dtype
from ..generation.prompts import PromptRenderer
from ..models.bundled import BUNDLED
from ..models.loading import load_model, load_model_config, load_tokenizer, resolve_model_path
from .lock import folder_lock
from .shards import ShardedOutput, is_complete, read_jsonl, write_atomic, write_if_changed

logger = logging.getLogger("simpo")

DEFAULT_JUDGE = "local:smollm2-135m-instruct"


@dataclass
class EvalOptions:
    models: list[str]
    names: list[str]
    benchmarks: list[str]
    limit: int | None = None
    judge: str = DEFAULT_JUDGE
    judge_base_url: str | None = None
    judge_max_length: int | None = None
    judge_batch_size: int = 16
    judge_max_tokens: int | None = None
    output: Path = Path("outputs/eval")
    data: str = "offline"
    mmlu_mode: str = "zeroeval"
    arena_hard_dir: str | None = None
    zeroeval_dir: str | None = None
    gsm_seed: int = 42
    seed: int = 42
    batch_size: int = 64
    shard_size: int = 32
    dtype: str = "auto"
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    alpaca_eval_gamed: str | None = None
    backend: str = "auto"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = OptionParser(prog="simpo eval", description="The SimPO model cards' benchmarks and their table.")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders, hub names or the bundled alias")
    p.add_argument("--names", help="comma-separated row labels, one per model (default: the folder names)")
    p.add_argument("--benchmarks", default=",".join(BENCHMARKS), help=f"comma-separated, of {', '.join(BENCHMARKS)}")
    p.add_argument("--limit", type=_positive, help="a fixed, stratified subset of N items per benchmark")
    p.add_argument("--judge", default=DEFAULT_JUDGE, help="openai:MODEL, local:MODEL or reward:MODEL (default %(default)s, a weak judge)")
    p.add_argument("--judge-base-url", help="an OpenAI-compatible endpoint for --judge openai:MODEL (key: OPENAI_API_KEY)")
    p.add_argument("--judge-max-length", type=_positive,
                   help="local and reward judges: cut the answers so that one judge input holds at most N tokens (default: its context)")
    p.add_argument("--judge-batch-size", type=_positive, default=16, help="local and reward judges: inputs judged together (default %(default)s)")
    p.add_argument("--judge-max-tokens", type=_positive, help="openai: judges: cap Arena-Hard judgments at N tokens, below the official "
                   "4096 (v0.1) and 16000 (v2.0), for a served judge whose context is shorter; the cell is then not comparable")
    p.add_argument("--output", default="outputs/eval", help="results folder (default %(default)s)")
    p.add_argument("--data", choices=("offline", "hub"), default="offline", help="benchmark data from PyPI wheels or from the hub")
    p.add_argument("--mmlu-mode", choices=("zeroeval", "loglik"), default="zeroeval",
                   help="ZeroEval's generated JSON answers, or the cheaper answer-letter log-likelihood")
    p.add_argument("--arena-hard-dir", help="an arena-hard-auto data folder (question.jsonl, model_answer/), e.g. v0.1")
    p.add_argument("--zeroeval-dir", metavar="PATH",
                   help="a ZeroEval checkout: GSM and MMLU prompts from its templates (default: simpo's wording of their layout)")
    p.add_argument("--gsm-seed", type=int, default=42, help="seed of the offline GSM-Symbolic problems")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (AlpacaEval samples)")
    p.add_argument("--batch-size", type=_positive, default=64, help="prompts decoded together, across shards (default %(default)s)")
    p.add_argument("--backend", choices=("auto", "transformers", "vllm"), default="auto",
                   help="the answers' sampling engine, as generate.backend (default %(default)s: vllm on a GPU where it is installed)")
    p.add_argument("--shard-size", type=_positive, default=32, help="items per shard written: the most work a kill can lose")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"), help="weights dtype while decoding")
    p.add_argument("--max-new-tokens", type=_positive, help="override every benchmark's token limit (default: the official 4096)")
    p.add_argument("--temperature", type=float, help="override every benchmark's temperature")
    p.add_argument("--top-p", type=float, help="override every benchmark's top_p")
    p.add_argument("--alpaca-eval-gamed", metavar="PATH",
                   help="alpaca_eval's df_gamed.csv (hub dataset tatsu-lab/alpaca_eval): AlpacaEval's LC is then the leaderboard's "
                        "length_controlled_v1 (--data hub downloads it; default offline: length_controlled_minimal)")
    return p


def parse_options(tokens: list[str]) -> EvalOptions:
    args = parser().parse_args(tokens)
    chosen = [name.strip() for name in args.benchmarks.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown or not chosen:
        raise RecipeError(f"--benchmarks takes names of {', '.join(BENCHMARKS)}, got {args.benchmarks!r}")
    names = [name.strip() for name in args.names.split(",")] if args.names else [_default_name(m) for m in args.models]
    for name in names:
        _check_label(name, bool(args.names))
    if len(names) != len(args.models):
        raise RecipeError(f"--names has {len(names)} labels for {len(args.models)} models")
    if len(set(names)) != len(names):
        raise RecipeError(f"the row labels must differ, got {names}: set --names")
    if args.temperature is not None and not args.temperature >= 0:
        raise RecipeError(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise RecipeError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.alpaca_eval_gamed is not None and not Path(args.alpaca_eval_gamed).is_file():
        raise RecipeError(f"--alpaca-eval-gamed {args.alpaca_eval_gamed}: no such file; give alpaca_eval's df_gamed.csv "
                          "(from the hub dataset tatsu-lab/alpaca_eval)")
    return EvalOptions(alpaca_eval_gamed=args.alpaca_eval_gamed, models=args.models, names=names, benchmarks=chosen, limit=args.limit, judge=args.judge,
                       judge_base_url=args.judge_base_url, judge_max_length=args.judge_max_length, judge_batch_size=args.judge_batch_size, judge_max_tokens=args.judge_max_tokens, output=Path(args.output), data=args.data, mmlu_mode=args.mmlu_mode,
                       arena_hard_dir=args.arena_hard_dir, zeroeval_dir=args.zeroeval_dir, gsm_seed=args.gsm_seed, seed=args.seed, batch_size=args.batch_size, shard_size=args.shard_size,
                       dtype=args.dtype, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                       backend=args.backend)


def _default_name(model: str) -> str:
    """The row label of a model: the bundled alias, or its folder's name (of the resolved path: `run/model/..` is `run`)."""
    if model in BUNDLED:
        return model
    path = Path(model).expanduser()
    return (path.resolve() if path.exists() else path).name or model


def _check_label(name: str, given: bool) -> None:
    """A row label names a folder under --output, never a path: one plain file name."""
    if not name or name in (".", "..") or any(char in name for char in "/\\\0") or name.startswith("-"):
        source = f"--names gives {name!r}" if given else f"the model's folder name {name!r} cannot be a row label"
        raise RecipeError(f"{source}: a row label is a plain name (no '/', not '.' or '..'); set --names")


def _hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _decoding(task, options: EvalOptions) -> dict:
    return {"temperature": task.temperature if options.temperature is None else options.temperature,
            "top_p": task.top_p if options.top_p is None else options.top_p,
            "max_new_tokens": options.max_new_tokens or task.max_new_tokens}


class ModelRun:
    """One model's answers to every chosen benchmark, generated lazily with one loaded backend."""

    def __init__(self, model: str, name: str, options: EvalOptions):
        self.model, self.name, self.options = model, name, options
        self.config = ModelConfig(model_name_or_path=model)
        try:
            self.tokenizer = load_tokenizer(self.config)
        except OSError as err:  # not a model folder, or a hub name that cannot be fetched
            raise RecipeError(f"model {model} cannot be loaded ({str(err).splitlines()[0]}): give a model folder with "
                              "config.json and tokenizer files, a hub name, or the bundled alias smollm2-135m-instruct") from None
        self.renderer = PromptRenderer(self.tokenizer)
        self.dtype = sampling_dtype(options.dtype, "--dtype")
        self.backend_name = pick_backend(options.backend, model)
        self.backend = self.scorer = None
        self.context = getattr(load_model_config(self.config), "max_position_embeddings", None)

    def answers(self, task, items: list[dict], folder: Path) -> tuple[list[str], dict]:
        decoding = _decoding(task, self.options)
        shown = [task.shown(self.renderer, item) for item in items]  # the exact texts the model reads
        prompts = [self.renderer.encode(text) for text in shown]
        limit = self.context - decoding["max_new_tokens"] if self.context else None
        too_long = {i for i, ids in enumerate(prompts) if limit is not None and len(ids) > limit}
        settings = {"model": self.model, "benchmark": task.name, "mode": task.mode, "items": [item["id"] for item in items],
                    "prompts": _hash({"ids": prompts}), "seed": self.options.seed, "dtype": self.dtype,
                    "shard_size": self.options.shard_size, **decoding}
        if self.backend_name == "vllm":  # the transformers backend's answer folders keep the names they had before vllm ran here
            settings["backend"] = "vllm"
        output = ShardedOutput(folder / f"answers-{_hash(settings)}", settings, len(items), self.options.shard_size)
        start = time.perf_counter()
        pending = {index: list(output.shard_rows(index)) for index in output.pending()}
        todo = {index: [i for i in rows if i not in too_long] for index, rows in pending.items()}

        def write(index: int, answered: dict[int, str]) -> None:
            output.write(index, [{"id": items[i]["id"], "output": answered.get(i, "")} for i in pending[index]])
            logger.info("eval %s %s: shard %d of %d written", self.name, task.name, index + 1, output.shard_count)

        for index in [index for index, rows in todo.items() if not rows or task.mode == "loglik"]:
            if todo[index] and self.scorer is None:
                self.scorer = load_model(self.config, self.dtype).eval()
            rows = todo.pop(index)
            write(index, dict(zip(rows, task.predict(self.scorer, self.tokenizer, [items[i] for i in rows], self.options.batch_size)))
                  if rows else {})
        if todo:  # every pending shard's prompts flow through one batch; each shard is written when its last answer is in
            if self.backend is None:
                self.backend = open_backend(self.backend_name, self.config, self.tokenizer, self.renderer.stop_ids, self.options.batch_size, self.dtype)
            shards = list(todo)
            for number, responses, _ in self.backend.sample_shards([[prompts[i] for i in todo[index]] for index in shards], [self.options.seed],
                                                                   decoding["temperature"], decoding["top_p"], decoding["max_new_tokens"]):
                write(shards[number], {i: response[0] for i, response in zip(todo[shards[number]], responses)})
        output.mark_complete()
        outputs = [row["output"] for path in sorted(output.folder.glob("shard-*.jsonl")) for row in read_jsonl(path)]
        notes = [f"{len(too_long)} prompts longer than the model's context minus max_new_tokens got an empty answer"] if too_long else []
        return outputs, {"seconds": time.perf_counter() - start, "settings": settings, "notes": notes, "prompts": shown}

    def close(self) -> None:
        self.backend = self.scorer = None


class Judging:
    """The judge, opened on first use and shared by every model."""

    def __init__(self, options: EvalOptions):
        self.options, self.judge = options, None

    def get(self):
        if self.judge is None:
            from ..evals.judges import open_judge

            self.judge = open_judge(self.options.judge, base_url=self.options.judge_base_url, batch_size=self.options.judge_batch_size,
                                    max_length=self.options.judge_max_length, max_tokens=self.options.judge_max_tokens)
        return self.judge


def _failed(judgment) -> bool:
    """A judgment that holds no verdict (a pair of Arena-Hard verdicts: either game)."""
    return judgment is None or (isinstance(judgment, list) and None in judgment)


def _judge(task, judging: Judging, items: list[dict], outputs: list[str], shards: ShardedOutput, counted: dict, label: str) -> list:
    """Every item's judgment. A failed one is written as such and asked again by the next run; the
    folder is complete only when none failed, so a run whose judge was unreachable is never final."""
    for index in range(shards.shard_count):
        rows = list(shards.shard_rows(index))
        path = shards.shard_path(index)
        known = {row["id"]: row["judgment"] for row in read_jsonl(path)} if path.is_file() else {}
        todo = [i for i in rows if items[i]["id"] not in known or _failed(known[items[i]["id"]])]
        if not todo:
            continue
        judge = judging.get()
        before = dict(judge.counters)
        verdicts = task.judge_shard(judge, [items[i] for i in todo], [outputs[i] for i in todo])
        for key, value in judge.counters.items():
            counted[key] = counted.get(key, 0) + value - before[key]
        known.update((items[i]["id"], verdict) for i, verdict in zip(todo, verdicts))
        shards.write(index, [{"id": items[i]["id"], "judgment": known[items[i]["id"]]} for i in rows])
        logger.info("eval %s: %d of %d items judged", label, rows[-1] + 1, len(items))
    judgments = [row["judgment"] for index in range(shards.shard_count) for row in read_jsonl(shards.shard_path(index))]
    failed = sum(map(_failed, judgments))
    if failed == len(judgments):
        seen = ", ".join(f"{n} {key}" for key, n in counted.items() if n) or "no request made"
        raise RecipeError(f"eval {label}: no judgment succeeded ({seen}); nothing was scored. Check the judge "
                          "(its endpoint, key and model) and run the same command again: the answers are kept")
    if not failed:
        shards.mark_complete()
    return judgments


def evaluate_benchmark(run: ModelRun, task, judging: Judging, label: str, items: list[dict], total: int) -> dict:
    options = run.options
    folder = options.output / run.name / task.name
    outputs, answered = run.answers(task, items, folder)
    judge_name = options.judge if task.judged else None
    judged_settings = {**answered["settings"], "judge": judge_name, **task.judged_settings()}
    if task.judged and options.judge_max_length:
        judged_settings["judge_max_length"] = options.judge_max_length
    if task.name == "arena_hard" and options.judge_max_tokens:
        judged_settings["judge_max_tokens"] = options.judge_max_tokens
    judged = folder / f"judged-{_hash(judged_settings)}"
    scoring = task.scoring_settings()  # e.g. another df_gamed.csv: the same judgments, scored again
    stored = json.loads((judged / "result.json").read_text()) if (judged / "result.json").is_file() else None
    if stored is not None and stored.get("scoring", {}) == scoring:
        result = stored
    else:
        start = time.perf_counter()
        judgments: list = []
        counted: dict[str, int] = {}  # what the judge counted (requests, retries, malformed, ...) in this run
        if task.judged:
            judgments = _judge(task, judging, items, outputs, ShardedOutput(judged, judged_settings, len(items), options.shard_size),
                               counted, f"{run.name} {task.name}")
        else:
            judged.mkdir(parents=True, exist_ok=True)
        scored = task.score(items, outputs, judgments, token_counts)
        records = [{"id": record["id"], "prompt": prompt, **record} for record, prompt in zip(scored.pop("records"), answered["prompts"])]
        write_atomic(judged / "records.jsonl", "".join(json.dumps(record) + "\n" for record in records))
        protocol = {"data": label, "items": len(items), "decoding": decoding_text(**_decoding(task, options)),
                    **({"judge": _judge_protocol(options, judged_settings.get("judge_max_tokens"))} if task.judged else {}), **scored.pop("protocol")}
        differ = differences(task.name, protocol)
        result = {
            "benchmark": task.name, "name": run.name, "model": run.model, "dataset": label, "n": len(items), "total": total,
            "judge": judge_name, "protocol": protocol, "differences": differ, "comparable": not differ,
            **scored, "notes": answered["notes"] + scored["notes"] + (
                [f"judge inputs cut to {options.judge_max_length} tokens"] if "judge_max_length" in judged_settings else []) + (
                ["judge: " + ", ".join(f"{n} {key}" for key, n in counted.items() if n and key != "requests")]
                if any(n for key, n in counted.items() if key != "requests") else []),
            "judge_counters": {key: n for key, n in counted.items() if n},
            **({"unfinished": "failed judgments: the same command asks them again"} if task.judged and not is_complete(judged) else {}),
            "seconds": {"generate": answered["seconds"], "judge": time.perf_counter() - start},
            "settings": answered["settings"] | {"items": len(items)},
            **({"scoring": scoring} if scoring else {}),
        }
        if not task.judged or is_complete(judged):  # failed judgments are asked again, so their result is not final
            write_atomic(judged / "result.json", json.dumps(result, indent=2))
    write_if_changed(folder / "result.json", json.dumps(result, indent=2))
    write_if_changed(folder / "records.jsonl", (judged / "records.jsonl").read_text())
    if task.name == "alpaca_eval":
        write_if_changed(folder / "model_outputs.json", json.dumps(
            [{"instruction": item["instruction"], "output": output, "generator": run.name, "dataset": item["dataset"]}
             for item, output in zip(items, outputs)], indent=2))
    return result


def _judge_protocol(options: EvalOptions, cap: int | None) -> str:
    """The judge as the protocol names it: an endpoint other than OpenAI's serves some model under that
    name; judgments capped below the official length (`cap`, Arena-Hard's) are another judge."""
    judge = options.judge
    if options.judge.startswith("openai:") and options.judge_base_url:
        judge = f"{options.judge} served at {options.judge_base_url}"
    if cap:
        judge += f", judgments cut at {cap} tokens"
    return judge


def run_eval(options: EvalOptions) -> str:
    """Evaluate every model on every chosen benchmark; the markdown table of all results in OUTPUT."""
    judged = any(task_for(name).judged for name in options.benchmarks)
    kind, judge_model = judge_kind(options.judge) if judged else ("", "")
    check_judge_ready(options.judge, options.judge_base_url, options.benchmarks, "--judge-base-url", options.judge_max_tokens,
                      "--judge-max-tokens")  # before any answer
    for model in options.models + ([judge_model] if judged and kind != "openai" else []):
        path = Path(resolve_model_path(model))
        if (path.is_absolute() or model.startswith(".") or path.exists()) and not any((path / file).is_file() for file in MODEL_FILES):
            raise RecipeError(f"model {model}: no such model folder (config.json missing); give a trained model's "
                              "folder, a hub name, or the bundled alias smollm2-135m-instruct")
    loaded = {}
    for name in options.benchmarks:  # every data problem shows before any model loads
        label, items = task_for(name, options.mmlu_mode).load(options)
        loaded[name] = (label, subset(items, options.limit), len(items))
    judging = Judging(options)
    with folder_lock(options.output):  # written from here on, the models and data checked
        for model, name in zip(options.models, options.names):
            run = ModelRun(model, name, options)
            for benchmark in options.benchmarks:
                label, items, total = loaded[benchmark]
                result = evaluate_benchmark(run, task_for(benchmark, options.mmlu_mode), judging, label, items, total)
                logger.info("eval %s %s: %s", name, benchmark, json.dumps(result["metrics"]))
            run.close()
        table = markdown_table({name: rows for name, rows in load_results(options.output).items() if name in options.names})
        write_if_changed(options.output / "results.md", table + "\n")
    return table
