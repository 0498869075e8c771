"""Recipes: YAML files (the official SimPO `training_configs` layout) plus command-line overrides.

A recipe is one flat mapping. Each key belongs to exactly one of three dataclasses: `ModelConfig`
(what to load), `DataConfig` (what to train on) or `SimPOConfig` (the loss and every
`transformers.TrainingArguments` field). Everything is validated before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments

from ..errors import RecipeError
from ..models.precision import DTYPES, resolve_bf16
from ..training.losses import HYPERPARAMETER_LIMITS, LOSSES
from .keys import recipe_key

REFERENCE_KEYS = ("ref_model_name_or_path", "precompute_ref_logps")  # only losses with a reference take them
_LOSS_HYPERPARAMETERS = sorted({key for loss in LOSSES.values() for key in loss.keys})
TRUNCATION_MODES = ("keep_end", "keep_start")


@dataclass
class ModelConfig:
    model_name_or_path: str = recipe_key("", "A model folder, a hub name, or the bundled alias smollm2-135m-instruct (required)")
    model_revision: str = recipe_key("main", "Hub revision (branch, tag or commit) of the model")
    torch_dtype: str | None = recipe_key(None, "Weights dtype: float32, bfloat16, float16, or auto (bf16 where the machine computes it natively, else fp32); unset: float32")
    attn_implementation: str | None = recipe_key(None, "Attention kernel passed to from_pretrained: eager, sdpa, flash_attention_2; unset: transformers' choice")
    trust_remote_code: bool = recipe_key(False, "Allow the model's own code from its folder or hub repository")
    chat_template: str | None = recipe_key(None, "A Jinja chat template that replaces the tokenizer's own (needed when it has none)")
    ref_model_name_or_path: str | None = recipe_key(None, "Reference model of dpo, ipo, kto_pair and rdpo; unset: the initial policy")


@dataclass
class DataConfig:
    dataset_mixer: dict[str, float] = recipe_key(help="{source: fraction}: files, folders or hub datasets; a fraction below 1 subsamples a training source (required)", factory=dict)
    dataset_splits: list[str] = recipe_key(help="Split names: one containing 'train' trains, one containing 'test' evaluates", factory=lambda: ["train", "test"])
    preprocessing_num_workers: int | None = recipe_key(None, "Processes for tokenization (used above 1,000 rows)")


@dataclass
class SimPOConfig(TrainingArguments):
    """`TrainingArguments` plus the loss keys (SimPO's names and defaults are the official trainer's).

    Loss hyperparameters left as None take the default of `loss_type` (see `training.losses.LOSSES`);
    those that do not belong to it stay None.
    """

    loss_type: str = recipe_key("simpo", f"The loss: simpo (alias sigmoid) or hinge, or a baseline: {', '.join(list(LOSSES)[3:])}")
    beta: float | None = recipe_key(None, "SimPO's reward scale beta (and the baselines' beta); default 2.0 for SimPO, 0.1 for the baselines")
    gamma_beta_ratio: float | None = recipe_key(None, "SimPO's target margin over beta, gamma/beta (default 0.25)")
    label_smoothing: float | None = recipe_key(None, "Label smoothing of the sigmoid SimPO loss, in [0, 0.5) (default 0)")
    sft_weight: float | None = recipe_key(None, "Weight of the chosen responses' token-mean NLL added to the SimPO loss (default 0)")
    tau: float | None = recipe_key(None, "IPO's tau (default 0.1)")
    nll_weight: float | None = recipe_key(None, "Weight of the NLL term of cpo, rrhf and slic_hf (default 1.0)")
    desirable_weight: float | None = recipe_key(None, "kto_pair's weight of the chosen responses (default 1.0)")
    undesirable_weight: float | None = recipe_key(None, "kto_pair's weight of the rejected responses (default 1.0)")
    orpo_lambda: float | None = recipe_key(None, "ORPO's weight of the odds-ratio term (default 0.1)")
    rdpo_alpha: float | None = recipe_key(None, "R-DPO's length penalty per token (default 0.05)")
    slic_delta: float | None = recipe_key(None, "SLiC-HF's margin delta (default 1.0)")
    precompute_ref_logps: bool = recipe_key(True, "Reference losses: compute the reference log-probs once before training and cache them (false: a live reference model)")
    max_length: int = recipe_key(1024, "Token limit of prompt + response")
    max_prompt_length: int = recipe_key(512, "Token limit of an over-long prompt after truncation (below max_length)")
    truncation_mode: str = recipe_key("keep_end", "Which part of an over-long prompt to keep: keep_end or keep_start")
    disable_dropout: bool = recipe_key(True, "Set every dropout to 0, as the official trainer does")
    padding_free: bool = recipe_key(True, "Pack a micro-batch's chosen and rejected sequences into one row without padding (exact)")
    share_prompt: bool = recipe_key(True, "In a packed row, each pair's prompt once for both responses (eager and SDPA attention; exact)")
    logps_chunk_size: int = recipe_key(256, "Response tokens per chunk of output head + log-softmax, recomputed in backward; 0: the model's own head")
    # Our collator builds the model inputs from tokenized pairs; Trainer must not prune them.
    remove_unused_columns: bool = False

    def __post_init__(self):
        super().__post_init__()
        loss = LOSSES.get(self.loss_type)
        for key, default in (loss.keys if loss else {}).items():
            if getattr(self, key) is None:
                setattr(self, key, default)

    @property
    def needs_reference(self) -> bool:
        return LOSSES[self.loss_type].needs_reference


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
# simpo's own training keys, in the order `--help` and the docs list them.
OWN_TRAINING_KEYS = [f.name for f in dataclasses.fields(SimPOConfig) if f.init and "help" in f.metadata and f.name in SimPOConfig.__annotations__]
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


# Keys of the pipeline recipe (`config.pipeline`), which `simpo train` does not take.
PIPELINE_KEYS = ("run_dir", "generate", "annotate", "binarize", "evaluate", "eval")


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
    if "bf16" in training_values:
        training_values["bf16"] = resolve_bf16(training_values["bf16"])
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
    if values.get("torch_dtype") not in (None, "auto", *DTYPES):
        raise RecipeError(f"torch_dtype must be one of auto, {', '.join(DTYPES)}, got {values['torch_dtype']!r}")
    if values.get("bf16", False) not in (True, False, "auto"):
        raise RecipeError(f"bf16 must be true, false or auto (bf16 autocast where the machine computes it natively), got {values['bf16']!r}")
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
    if loss_type not in LOSSES:
        raise RecipeError(f"loss_type must be one of {', '.join(LOSSES)}, got {loss_type!r}")
    loss = LOSSES[loss_type]
    own = list(loss.keys) + (list(REFERENCE_KEYS) if loss.needs_reference else [])
    for key in (*_LOSS_HYPERPARAMETERS, *REFERENCE_KEYS):
        if key in values and key not in own:
            raise RecipeError(
                f"{key} does not apply to loss_type {loss_type!r} (its keys: {', '.join(own)}); remove it or change loss_type"
            )
    for key, default in loss.keys.items():
        value = number(key, default)
        low, low_ok, high = HYPERPARAMETER_LIMITS[key]
        if value < low or (value == low and not low_ok) or (high is not None and value >= high):
            bound = f"in [{low}, {high})" if high is not None else f"{'>=' if low_ok else '>'} {low}"
            raise RecipeError(f"{key} must be {bound}, got {value}")
    if "precompute_ref_logps" in values and not isinstance(values["precompute_ref_logps"], bool):
        raise RecipeError(f"precompute_ref_logps must be true or false, got {values['precompute_ref_logps']!r}")
