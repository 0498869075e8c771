"""Recipes: YAML files (the official SimPO `training_configs` layout) plus command-line overrides.

A recipe is one flat mapping. Each key belongs to exactly one of three dataclasses: `ModelConfig`
(what to load), `DataConfig` (what to train on) or `SimPOConfig` (the loss and every
`transformers.TrainingArguments` field). Everything is validated before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key and says what to do."""


# Each loss and the recipe keys that belong to it, with their defaults (within the SimPO paper's
# search ranges for the baselines, arXiv 2405.14734 appendix; SimPO's own are the official trainer's).
# A key of this table set for a loss that does not list it is an error; unset keys get the loss's default.
_SIMPO_KEYS = {"beta": 2.0, "gamma_beta_ratio": 0.25, "label_smoothing": 0.0, "sft_weight": 0.0}
LOSS_KEYS: dict[str, dict[str, float]] = {
    "simpo": _SIMPO_KEYS,
    "sigmoid": _SIMPO_KEYS,
    "hinge": {"beta": 2.0, "gamma_beta_ratio": 0.25, "sft_weight": 0.0},
    "dpo": {"beta": 0.1},
    "ipo": {"tau": 0.1},
    "cpo": {"beta": 0.1, "nll_weight": 1.0},
    "kto_pair": {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0},
    "orpo": {"orpo_lambda": 0.1},
    "rdpo": {"beta": 0.1, "rdpo_alpha": 0.05},
    "rrhf": {"nll_weight": 1.0},
    "slic_hf": {"slic_delta": 1.0, "nll_weight": 1.0},
}
LOSS_TYPES = tuple(LOSS_KEYS)
# Losses whose reward is a log-ratio against a reference model, and the keys only they take.
REFERENCE_LOSSES = ("dpo", "ipo", "kto_pair", "rdpo")
REFERENCE_KEYS = ("ref_model_name_or_path", "precompute_ref_logps")
_LOSS_HYPERPARAMETERS = sorted({key for keys in LOSS_KEYS.values() for key in keys})
TRUNCATION_MODES = ("keep_end", "keep_start")


@dataclass
class ModelConfig:
    model_name_or_path: str = ""
    model_revision: str = "main"
    torch_dtype: str | None = None  # "auto", "bfloat16", "float16", "float32"; None means float32
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    chat_template: str | None = None  # Jinja template that replaces the tokenizer's own
    ref_model_name_or_path: str | None = None  # reference model of dpo/ipo/kto_pair/rdpo; None: the initial policy


@dataclass
class DataConfig:
    dataset_mixer: dict[str, float] = field(default_factory=dict)
    dataset_splits: list[str] = field(default_factory=lambda: ["train", "test"])
    preprocessing_num_workers: int | None = None


@dataclass
class SimPOConfig(TrainingArguments):
    """`TrainingArguments` plus the loss keys (SimPO's names and defaults are the official trainer's).

    Loss hyperparameters left as None take the default of `loss_type` (see `LOSS_KEYS`); those that
    do not belong to it stay None.
    """

    loss_type: str = "simpo"
    beta: float | None = None
    gamma_beta_ratio: float | None = None
    label_smoothing: float | None = None
    sft_weight: float | None = None
    tau: float | None = None
    nll_weight: float | None = None
    desirable_weight: float | None = None
    undesirable_weight: float | None = None
    orpo_lambda: float | None = None
    rdpo_alpha: float | None = None
    slic_delta: float | None = None
    # Reference losses: reference log-probs computed once before training and cached (true), or a
    # live reference model kept beside the policy (false).
    precompute_ref_logps: bool = True
    max_length: int = 1024
    max_prompt_length: int = 512
    truncation_mode: str = "keep_end"
    disable_dropout: bool = True
    # Memory and speed (exact, so on by default): pairs packed into one row with no padding, each
    # pair's prompt once for both responses (eager/SDPA attention), and the output head +
    # log-softmax applied to response tokens in chunks of this many tokens (0: off).
    padding_free: bool = True
    share_prompt: bool = True
    logps_chunk_size: int = 256
    # Our collator builds the model inputs from tokenized pairs; Trainer must not prune them.
    remove_unused_columns: bool = False

    def __post_init__(self):
        super().__post_init__()
        for key, default in LOSS_KEYS.get(self.loss_type, {}).items():
            if getattr(self, key) is None:
                setattr(self, key, default)

    @property
    def needs_reference(self) -> bool:
        return self.loss_type in REFERENCE_LOSSES


# Old names that official recipes still use, mapped to the name we store. transformers 5 reads a
# `warmup_steps` below 1 as a fraction of the training steps, which is what `warmup_ratio` meant.
ALIASES = {
    "evaluation_strategy": "eval_strategy",
    "dtype": "torch_dtype",
    "warmup_ratio": "warmup_steps",
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}

_SECTIONS = (ModelConfig, DataConfig, SimPOConfig)
_FIELDS = {cls: {f.name for f in dataclasses.fields(cls) if f.init} for cls in _SECTIONS}
KNOWN_KEYS = set().union(*_FIELDS.values())


@dataclass
class Recipe:
    model: ModelConfig
    data: DataConfig
    training: SimPOConfig
    raw: dict[str, Any]  # the merged recipe as given (aliases resolved), saved beside the model

    def to_json(self) -> str:
        resolved = {
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "training": self.training.to_dict(),
        }
        return json.dumps(resolved, indent=2, default=str)


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """`--key value` / `--key=value` pairs; values are read as YAML (numbers, lists, mappings)."""
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise RecipeError(f"expected an override like --key value, got {token!r}")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "true"  # a bare flag
        overrides[key] = yaml.safe_load(value) if value != "" else ""
        i += 1
    return overrides


def _closest(key: str) -> str:
    match = difflib.get_close_matches(key, sorted(KNOWN_KEYS | set(ALIASES)), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


# Keys of `stages.py`'s pipeline recipe, which `simpo train` does not take.
PIPELINE_KEYS = ("run_dir", "generate", "annotate", "binarize", "evaluate")


def _normalise_keys(values: dict[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    given: dict[str, str] = {}  # stored name -> the name the recipe used
    for key, value in values.items():
        name = ALIASES.get(key, key)
        if name in PIPELINE_KEYS:
            raise RecipeError(f"{key!r} in {source} belongs to a pipeline recipe: run it with `simpo pipeline` (or one stage)")
        if name not in KNOWN_KEYS:
            raise RecipeError(f"unknown recipe key {key!r} in {source}{_closest(key)}")
        if name in out:
            raise RecipeError(f"{source} sets both {given[name]!r} and {key!r}, two names of one key: keep one")
        given[name] = key
        if key == "warmup_ratio" and not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise RecipeError(f"warmup_ratio must be a fraction in [0, 1), got {value!r}")
        out[name] = value
    return out


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise RecipeError(f"{path} must be a mapping of recipe keys, got {type(values).__name__}")
    return values


def build_recipe(values: dict[str, Any], source: str = "the recipe") -> Recipe:
    """Validate a flat recipe mapping and split it into the three configs."""
    values = _normalise_keys(values, source)
    values.setdefault("output_dir", "outputs/simpo")
    _check_simpo_values(values)
    parts = {cls: {k: v for k, v in values.items() if k in _FIELDS[cls]} for cls in _SECTIONS}
    training_values = parts[SimPOConfig]
    if "use_cpu" not in training_values and not _accelerator_available():
        training_values["use_cpu"] = True  # bf16 recipes then run with CPU autocast instead of failing
    try:
        model = ModelConfig(**parts[ModelConfig])
        data = DataConfig(**parts[DataConfig])
        training = SimPOConfig(**training_values)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{source}: {err}") from None
    return Recipe(model=model, data=data, training=training, raw=values)


def load_recipe(path: str | Path, override_tokens: list[str] | None = None) -> Recipe:
    values = _normalise_keys(read_recipe_file(path), str(path))
    overrides = _normalise_keys(parse_overrides(override_tokens or []), "the command line")
    values.update(overrides)
    return build_recipe(values, source=str(path))


def _accelerator_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_simpo_values(values: dict[str, Any]) -> None:
    def number(key: str, default: float) -> float:
        value = values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{key} must be a number, got {value!r}")
        return value

    if not values.get("model_name_or_path"):
        raise RecipeError("model_name_or_path is required (a folder, a hub name or 'smollm2-135m-instruct')")
    mixer = values.get("dataset_mixer")
    if not isinstance(mixer, dict) or not mixer:
        raise RecipeError("dataset_mixer is required: a mapping {dataset: fraction}, e.g. {data/pairs: 1.0}")
    for name, fraction in mixer.items():
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise RecipeError(f"dataset_mixer[{name!r}] must be a fraction in (0, 1], got {fraction!r}")
    splits = values.get("dataset_splits", ["train", "test"])
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise RecipeError(f"dataset_splits must be a list of split names, got {splits!r}")
    _check_loss_values(values, number)
    mode = values.get("truncation_mode", "keep_end")
    if mode not in TRUNCATION_MODES:
        raise RecipeError(f"truncation_mode must be one of {', '.join(TRUNCATION_MODES)}, got {mode!r}")
    chunk = values.get("logps_chunk_size", 256)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        raise RecipeError(f"logps_chunk_size must be a whole number >= 0 (0 turns chunking off), got {chunk!r}")
    max_length = values.get("max_length", 1024)
    max_prompt_length = values.get("max_prompt_length", 512)
    for key, value in (("max_length", max_length), ("max_prompt_length", max_prompt_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise RecipeError(f"{key} must be a positive whole number, got {value!r}")
    if max_prompt_length >= max_length:
        raise RecipeError(
            f"max_prompt_length ({max_prompt_length}) must be smaller than max_length ({max_length}): "
            "otherwise a prompt can leave no room for its response"
        )


def _check_loss_values(values: dict[str, Any], number) -> None:
    """`loss_type` is known, every loss key set belongs to it, and each value is in its range."""
    loss_type = values.get("loss_type", "simpo")
    if loss_type not in LOSS_KEYS:
        raise RecipeError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
    own = list(LOSS_KEYS[loss_type]) + (list(REFERENCE_KEYS) if loss_type in REFERENCE_LOSSES else [])
    for key in (*_LOSS_HYPERPARAMETERS, *REFERENCE_KEYS):
        if key in values and key not in own:
            raise RecipeError(
                f"{key} does not apply to loss_type {loss_type!r} (its keys: {', '.join(own)}); remove it or change loss_type"
            )
    limits = {  # key: (lowest, whether the lowest is allowed, highest excluded)
        "beta": (0, False, None), "tau": (0, False, None), "gamma_beta_ratio": (0, True, None),
        "sft_weight": (0, True, None), "nll_weight": (0, True, None), "orpo_lambda": (0, True, None),
        "desirable_weight": (0, True, None), "undesirable_weight": (0, True, None),
        "rdpo_alpha": (0, True, None), "slic_delta": (0, True, None), "label_smoothing": (0, True, 0.5),
    }
    for key, default in LOSS_KEYS[loss_type].items():
        value = number(key, default)
        low, low_ok, high = limits[key]
        if value < low or (value == low and not low_ok) or (high is not None and value >= high):
            bound = f"in [{low}, {high})" if high is not None else f"{'>=' if low_ok else '>'} {low}"
            raise RecipeError(f"{key} must be {bound}, got {value}")
    if "precompute_ref_logps" in values and not isinstance(values["precompute_ref_logps"], bool):
        raise RecipeError(f"precompute_ref_logps must be true or false, got {values['precompute_ref_logps']!r}")
