"""Recipes: YAML files (the official SimPO `training_configs` layout) plus command-line overrides.

A recipe is one flat mapping. Each key belongs to exactly one of three dataclasses: `ModelConfig`
(what to load), `DataConfig` (what to train on) or `SimPOConfig` (the loss and every
`transformers.TrainingArguments` field). Everything is validated before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments

from ..data.encode import TOKENIZATIONS
from ..errors import RecipeError
from ..models.bundled import BUNDLED
from ..models.precision import DTYPES, resolve_bf16
from ..training.losses import HYPERPARAMETER_LIMITS, LOSSES
from .keys import recipe_key
from .limits import check_limits, check_range
from .types import convert, field_types

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
    tokenization: str = recipe_key("template", "Which tokens a response is: template (what the chat template renders after the prompt) or official (the official SimPO trainer's sequences, for its recipes)")
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
FIELD_TYPES = {name: kind for cls in _SECTIONS for name, kind in field_types(cls).items()}


@dataclass
class Recipe:
    model: ModelConfig
    data: DataConfig
    training: SimPOConfig
    raw: dict[str, Any]  # the merged recipe as given (aliases resolved), saved beside the model

    def resolved(self) -> dict[str, Any]:
        """Every setting as the run will use it, defaults included (`--dry-run` prints it)."""
        return {"model": dataclasses.asdict(self.model), "data": dataclasses.asdict(self.data), "training": self.training.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.resolved(), indent=2, default=str)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML itself keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise RecipeError(f"{key_node.start_mark.name}, line {key_node.start_mark.line + 1}: {key!r} is set twice "
                                  f"(also on line {seen[key] + 1}); keep one")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


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
        try:
            overrides[key] = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError as err:
            raise RecipeError(f"--{key} {value!r} is not a YAML value ({err.problem or err}); quote lists like '[1, 2]' whole") from None
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
        section, dot, rest = str(name).partition(".")
        if name in PIPELINE_KEYS or dot and section in PIPELINE_KEYS:
            raise RecipeError(f"{key!r} in {source} belongs to a pipeline recipe: run it with `simpo pipeline` (or one stage)")
        if dot:
            match = difflib.get_close_matches(section, PIPELINE_KEYS, n=1, cutoff=0.5)
            hint = f"; did you mean {match[0]}.{rest}?" if match else f"; the sections are {', '.join(PIPELINE_KEYS)}"
            raise RecipeError(f"unknown section {section!r} in {key!r} in {source}{hint}")
        if name not in KNOWN_KEYS:
            raise RecipeError(f"unknown recipe key {key!r} in {source}{_closest(key)}")
        if name in out:
            raise RecipeError(f"{source} sets both {given[name]!r} and {key!r}, two names of one key: keep one")
        given[name] = key
        out[name] = _typed(name, key, value, source)
        if key == "warmup_ratio" and not 0 <= out[name] < 1:
            raise RecipeError(f"warmup_ratio must be a fraction in [0, 1), got {value!r}")
    return out


def _typed(name: str, key: str, value: Any, source: str) -> Any:
    """`value` converted to the declared type of key `name`, given as `key` (see `config.types`)."""
    if name == "bf16" and value == "auto":
        return value
    if name == "bf16" and isinstance(value, str) and value.lower() not in ("true", "false", "yes", "no"):
        raise RecipeError(f"bf16 must be true, false or auto (bf16 autocast where the machine computes it natively), got {value!r} ({source})")
    if name == "resume_from_checkpoint" and isinstance(value, bool):
        return str(value).lower()  # `true`: the newest checkpoint in output_dir; `false`: start over
    try:
        return convert(value, FIELD_TYPES[name], key)
    except RecipeError as err:
        raise RecipeError(f"{err} ({source})") from None


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{path} is not a text file (a recipe is YAML in UTF-8)") from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(values, dict):
        raise RecipeError(f"{path} must be a mapping of recipe keys, got {type(values).__name__}")
    return values


def build_recipe(values: dict[str, Any], source: str = "the recipe") -> Recipe:
    """Validate a flat recipe mapping and split it into the three configs."""
    values = _normalise_keys(values, source)
    values.setdefault("output_dir", "outputs/simpo")
    _check_simpo_values(values)
    check_limits(values)
    _check_choices(values)
    _check_paths(values)
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
        raise RecipeError(f"{source}: {' '.join(str(err).split())}") from None
    return Recipe(model=model, data=data, training=training, raw=values)


def load_recipe(path: str | Path, override_tokens: list[str] | None = None) -> Recipe:
    values = _normalise_keys(read_recipe_file(path), str(path))
    overrides = _normalise_keys(parse_overrides(override_tokens or []), "the command line")
    values.update(overrides)
    recipe = build_recipe(values, source=str(path))
    for source in recipe.data.dataset_mixer:  # (a pipeline's training data is written by its own stages)
        if source.startswith((".", "/", "~")) and not Path(source).expanduser().exists():
            raise RecipeError(f"dataset_mixer: {source} does not exist")
    return recipe


def _accelerator_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_simpo_values(values: dict[str, Any]) -> None:
    if not values.get("model_name_or_path"):
        raise RecipeError("model_name_or_path is required (a folder, a hub name or 'smollm2-135m-instruct')")
    mixer = values.get("dataset_mixer")
    if not mixer:
        raise RecipeError("dataset_mixer is required: a mapping {dataset: fraction}, e.g. {data/pairs: 1.0}")
    for name, fraction in mixer.items():
        if not 0 < fraction <= 1:
            raise RecipeError(f"dataset_mixer[{name!r}] must be a fraction in (0, 1], got {fraction!r}")
    _check_loss_values(values)
    if values.get("load_best_model_at_end") and values.get("eval_strategy", "no") == "no":
        raise RecipeError("load_best_model_at_end needs evaluations to choose from: set eval_strategy (and save_strategy) to steps or epoch")
    if values.get("torch_dtype") not in (None, "auto", *DTYPES):
        raise RecipeError(f"torch_dtype must be one of auto, {', '.join(DTYPES)}, got {values['torch_dtype']!r}")
    mode = values.get("truncation_mode", "keep_end")
    if mode not in TRUNCATION_MODES:
        raise RecipeError(f"truncation_mode must be one of {', '.join(TRUNCATION_MODES)}, got {mode!r}")
    if values.get("tokenization", "template") not in TOKENIZATIONS:
        raise RecipeError(f"tokenization must be one of {', '.join(TOKENIZATIONS)}, got {values['tokenization']!r}")
    max_length, max_prompt_length = values.get("max_length", 1024), values.get("max_prompt_length", 512)
    if max_prompt_length >= max_length:
        raise RecipeError(
            f"max_prompt_length ({max_prompt_length}) must be smaller than max_length ({max_length}): "
            "otherwise a prompt can leave no room for its response"
        )


def _check_choices(values: dict[str, Any]) -> None:
    """Keys whose values are names from lists transformers keeps: report_to, attn_implementation."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    report_to = values.get("report_to")
    known = ["none", "all", *INTEGRATION_TO_CALLBACK]
    for name in [report_to] if isinstance(report_to, str) else report_to or []:
        if name not in known:
            raise RecipeError(f"report_to: unknown integration {name!r}; use one of {', '.join(known)}")
    attention = values.get("attn_implementation")
    kernels = ["eager", *ALL_ATTENTION_FUNCTIONS]
    if attention is not None and attention not in kernels and "/" not in attention:  # "org/kernel": a hub kernel
        raise RecipeError(f"attn_implementation must be one of {', '.join(kernels)} (or a hub kernel org/name), got {attention!r}")


def check_installed(training: SimPOConfig) -> None:
    """What the run needs installed here: the optimizer's package (and its `optim_args` parse) and the
    report_to integrations. Checked when a run starts, not by `--dry-run` (a GPU recipe checked on a laptop)."""
    from transformers import Trainer
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    try:
        Trainer.get_optimizer_cls_and_kwargs(training)
    except ImportError as err:
        raise RecipeError(f"optim {training.optim}: {' '.join(str(err).split())}") from None
    except ValueError as err:
        raise RecipeError(f"optim {training.optim} (optim_args {training.optim_args!r}): {' '.join(str(err).split())}") from None
    missing = sorted(set(training.report_to) - set(get_available_reporting_integrations()) - {"none", "all"})
    if missing:
        raise RecipeError(f"report_to: {', '.join(missing)} not installed here; pip install it, or set report_to: none")


_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _check_model_name(key: str, name: str) -> None:
    """A bundled alias, a folder holding a model, or a name of the hub's form (checked online at load)."""
    path = Path(name).expanduser()
    if name in BUNDLED:
        return
    if path.is_dir():
        if not any((path / file).is_file() for file in ("config.json", "adapter_config.json", "tokenizer_config.json")):
            raise RecipeError(f"{key}: the folder {name} holds no config.json (nor tokenizer files), so it is not a saved model")
        return
    if name.startswith((".", "/", "~")) or path.exists() or not _HUB_NAME.fullmatch(name):
        raise RecipeError(f"{key}: {name} is neither a model folder nor a hub name (owner/name); "
                          f"check the path, or use the bundled {next(iter(BUNDLED))}")


def _check_paths(values: dict[str, Any]) -> None:
    for key in ("model_name_or_path", "ref_model_name_or_path"):
        if values.get(key):
            _check_model_name(key, values[key])
    output_dir = Path(values["output_dir"])
    if output_dir.exists() and not output_dir.is_dir():
        raise RecipeError(f"output_dir {output_dir} is a file; name a folder")
    resume = values.get("resume_from_checkpoint")
    if resume not in (None, "true", "false") and not Path(resume).is_dir():
        raise RecipeError(f"resume_from_checkpoint: no checkpoint folder {resume}; use true (the newest in output_dir) or a checkpoint-N folder")


def _check_loss_values(values: dict[str, Any]) -> None:
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
    for key in loss.keys:
        check_range(key, values.get(key), HYPERPARAMETER_LIMITS[key])
