"""The SFT recipe (`simpo sft`): the official supervised fine-tuning configs' keys, loaded unchanged.

The official base-model route trains an SFT model first (princeton-nlp/SimPO's
`training_configs/llama-3-8b-base-sft.yaml`; for Mistral, the alignment-handbook's zephyr-7b-sft-full
recipe), run by the alignment-handbook's `run_sft.py`. Its keys are the handbook's `ModelArguments`,
`DataArguments` and `SFTConfig` (a `TrainingArguments` with `max_seq_length` and `dataset_kwargs`),
so an SFT recipe holds: the training recipe's model keys (plus `use_flash_attention_2`, the older
name of `attn_implementation: flash_attention_2`), its data keys (plus `auto_insert_empty_system_msg`),
and `SFTConfig` below. Reading, key names, value conversion and ranges are the training recipe's
(`config.recipe`, `config.types`, `config.limits`); everything is checked before any model loads.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from ..errors import RecipeError
from ..models.precision import DTYPES, resolve_bf16
from . import recipe as training_recipe
from .keys import recipe_key
from .limits import check_limits
from .recipe import ALIASES, DataConfig, ModelConfig, Recipe, parse_overrides, read_recipe_file
from .types import convert, field_types

# TRL's packing options (`ConstantLengthDataset`), which the official recipes may set in `dataset_kwargs`.
DATASET_KWARGS = {"add_special_tokens": True, "append_concat_token": True}


@dataclass
class SFTModelConfig(ModelConfig):
    use_flash_attention_2: bool = recipe_key(False, "The official recipes' older name for attn_implementation: flash_attention_2")


@dataclass
class SFTDataConfig(DataConfig):
    auto_insert_empty_system_msg: bool = recipe_key(True, "Give a conversation without a system message an empty one when the template renders system messages (the official default)")


@dataclass
class SFTConfig(TrainingArguments):
    """`TrainingArguments` plus the keys of the alignment-handbook's `SFTConfig` and TRL's packing.

    The loss is the mean negative log-likelihood of the assistant tokens of an optimizer step: every
    scored token of every micro-batch of the step, on every process, weighs the same.
    """

    max_seq_length: int = recipe_key(1024, "Token limit of a conversation (a longer one is cut, and counted) and of a packed row")
    packing: bool = recipe_key(True, "Pack whole conversations into rows of up to max_seq_length tokens, trained without padding and without attention across conversations; false: one conversation per row, padded")
    dataset_kwargs: dict[str, bool] | None = recipe_key(None, "TRL's packing options: add_special_tokens (the tokenizer's own BOS where the template writes none; default true) and append_concat_token (EOS after each conversation; default true)")
    logps_chunk_size: int = recipe_key(256, "Scored tokens per chunk of output head + log-softmax, recomputed in backward; 0: the model's own head")
    overwrite_output_dir: bool = recipe_key(False, "Accepted from the official recipes (transformers 5 has no such key); no effect: resume_from_checkpoint decides whether a run resumes")
    logging_first_step: bool = recipe_key(True, "Log the first optimizer step (the official SFT recipes' default)")

    def packing_options(self) -> dict[str, bool]:
        return {**DATASET_KWARGS, **(self.dataset_kwargs or {})}


@dataclass
class SFTRecipe(Recipe):
    model: SFTModelConfig
    data: SFTDataConfig
    training: SFTConfig

    def resolved(self) -> dict[str, Any]:
        settings = super().resolved()
        for key in _NOT_SFT:
            settings["model"].pop(key)
        return settings


_SECTIONS = (SFTModelConfig, SFTDataConfig, SFTConfig)
_NOT_SFT = ("ref_model_name_or_path",)  # a training recipe's model key that SFT has no use for
_FIELDS = {cls: {f.name for f in dataclasses.fields(cls) if f.init} - set(_NOT_SFT) for cls in _SECTIONS}
KNOWN_KEYS = set().union(*_FIELDS.values())
FIELD_TYPES = {name: kind for cls in _SECTIONS for name, kind in field_types(cls).items()}
# The model keys and simpo's own SFT keys, in the order `--help` and the docs list them.
MODEL_KEYS = [f.name for f in dataclasses.fields(SFTModelConfig) if f.name not in _NOT_SFT]
OWN_SFT_KEYS = [f.name for f in dataclasses.fields(SFTConfig) if f.init and f.name in SFTConfig.__annotations__]


def _typed(name: str, key: str, value: Any, source: str) -> Any:
    """As in a training recipe (`bf16: auto` included), for the keys the two share with one type."""
    if training_recipe.FIELD_TYPES.get(name) == FIELD_TYPES[name]:
        return training_recipe._typed(name, key, value, source)
    try:
        return convert(value, FIELD_TYPES[name], key)
    except RecipeError as err:
        raise RecipeError(f"{err} ({source})") from None


def _normalise_keys(values: dict[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in values.items():
        name = ALIASES.get(key, key)
        if name not in KNOWN_KEYS:
            if name in training_recipe.KNOWN_KEYS or str(name).partition(".")[0] in training_recipe.PIPELINE_KEYS:
                raise RecipeError(f"{key!r} in {source} is not an SFT key: it belongs to a preference recipe (simpo train or simpo pipeline)")
            match = difflib.get_close_matches(str(key), sorted(KNOWN_KEYS | set(ALIASES)), n=1, cutoff=0.5)
            raise RecipeError(f"unknown recipe key {key!r} in {source}" + (f"; did you mean {match[0]!r}?" if match else ""))
        if name in out:
            raise RecipeError(f"{source} sets both {given[name]!r} and {key!r}, two names of one key: keep one")
        given[name] = key
        out[name] = _typed(name, key, value, source)
        if key == "warmup_ratio" and not 0 <= out[name] < 1:
            raise RecipeError(f"warmup_ratio must be a fraction in [0, 1), got {value!r}")
    return out


def _check_sft_values(values: dict[str, Any]) -> None:
    if not values.get("model_name_or_path"):
        raise RecipeError("model_name_or_path is required (a folder, a hub name or 'smollm2-135m-instruct')")
    mixer = values.get("dataset_mixer")
    if not mixer:
        raise RecipeError("dataset_mixer is required: a mapping {dataset: fraction} of conversation datasets (rows with 'messages')")
    for name, fraction in mixer.items():
        if not 0 < fraction <= 1:
            raise RecipeError(f"dataset_mixer[{name!r}] must be a fraction in (0, 1], got {fraction!r}")
    for key in (values.get("dataset_kwargs") or {}):
        if key not in DATASET_KWARGS:
            raise RecipeError(f"dataset_kwargs: {key!r} is not supported; simpo sft takes {' and '.join(DATASET_KWARGS)} (TRL's packing options)")
    if values.get("use_flash_attention_2") and values.get("attn_implementation") not in (None, "flash_attention_2"):
        raise RecipeError(f"use_flash_attention_2: true contradicts attn_implementation: {values['attn_implementation']}; keep one")
    if values.get("load_best_model_at_end") and values.get("eval_strategy", "no") == "no":
        raise RecipeError("load_best_model_at_end needs evaluations to choose from: set eval_strategy (and save_strategy) to steps or epoch")
    if values.get("torch_dtype") not in (None, "auto", *DTYPES):
        raise RecipeError(f"torch_dtype must be one of auto, {', '.join(DTYPES)}, got {values['torch_dtype']!r}")


def build_sft_recipe(values: dict[str, Any], source: str = "the recipe") -> SFTRecipe:
    """Validate a flat SFT recipe mapping and split it into its three configs."""
    values = _normalise_keys(values, source)
    values.setdefault("output_dir", "outputs/sft")
    _check_sft_values(values)
    check_limits(values)
    training_recipe._check_choices(values)
    training_recipe._check_paths(values)
    parts = {cls: {k: v for k, v in values.items() if k in _FIELDS[cls]} for cls in _SECTIONS}
    if parts[SFTModelConfig].get("use_flash_attention_2"):
        parts[SFTModelConfig]["attn_implementation"] = "flash_attention_2"
    training_values = parts[SFTConfig]
    if "use_cpu" not in training_values and not training_recipe._accelerator_available():
        training_values["use_cpu"] = True  # bf16 recipes then run with CPU autocast instead of failing
    if "bf16" in training_values:
        training_values["bf16"] = resolve_bf16(training_values["bf16"])
    try:
        model = SFTModelConfig(**parts[SFTModelConfig])
        data = SFTDataConfig(**parts[SFTDataConfig])
        training = SFTConfig(**training_values)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{source}: {' '.join(str(err).split())}") from None
    return SFTRecipe(model=model, data=data, training=training, raw=values)


def load_sft_recipe(path: str | Path, override_tokens: list[str] | None = None) -> SFTRecipe:
    values = _normalise_keys(read_recipe_file(path), str(path))
    values.update(_normalise_keys(parse_overrides(override_tokens or []), "the command line"))
    recipe = build_sft_recipe(values, source=str(path))
    for source in recipe.data.dataset_mixer:
        if source.startswith((".", "/", "~")) and not Path(source).expanduser().exists():
            raise RecipeError(f"dataset_mixer: {source} does not exist")
    return recipe
