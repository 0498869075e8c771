"""The SFT recipe (`simpo sft`): the official supervised fine-tuning configs' keys, loaded unchanged.

The official base-model route trains an SFT model first (princeton-nlp/SimPO's
`training_configs/llama-3-8b-base-sft.yaml`; for Mistral, the alignment-handbook's zephyr-7b-sft-full
recipe), run by the alignment-handbook's `run_sft.py`. Its keys are the handbook's `ModelArguments`,
`DataArguments` and `SFTConfig` (a `TrainingArguments` with `max_seq_length` and `dataset_kwargs`),
so an SFT recipe holds: the training recipe's model keys (plus `use_flash_attention_2`, the older
name of `attn_implementation: flash_attention_2`), its data keys (plus `auto_insert_empty_system_msg`),
and `SFTConfig` below. Reading, key names, value conversion, ranges and the checks every recipe needs
are `config.recipe_kind`'s (the SFT recipe is the kind `SFT`); everything is checked before any model loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from transformers import TrainingArguments

from ..errors import RecipeError
from .keys import recipe_key
from .recipe import TRAINING, DataConfig, ModelConfig, Recipe
from .recipe_kind import RecipeKind

# TRL's packing options (`ConstantLengthDataset`), which the official recipes may set in `dataset_kwargs`.
DATASET_KWARGS = {"add_special_tokens": True, "append_concat_token": True}


@dataclass
class SFTModelConfig(ModelConfig):
    use_flash_attention_2: bool = recipe_key(False, "The official recipes' older name for attn_implementation: flash_attention_2")

    def __post_init__(self):
        if self.use_flash_attention_2:
            self.attn_implementation = "flash_attention_2"


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


_NOT_SFT = ("ref_model_name_or_path",)  # a training recipe's model key that SFT has no use for
# The model keys and simpo's own SFT keys, in the order `--help` and the docs list them.
MODEL_KEYS = [f.name for f in dataclasses.fields(SFTModelConfig) if f.name not in _NOT_SFT]
OWN_SFT_KEYS = [f.name for f in dataclasses.fields(SFTConfig) if f.init and f.name in SFTConfig.__annotations__]


def _check_sft_values(values: dict[str, Any]) -> None:
    for key in (values.get("dataset_kwargs") or {}):
        if key not in DATASET_KWARGS:
            raise RecipeError(f"dataset_kwargs: {key!r} is not supported; simpo sft takes {' and '.join(DATASET_KWARGS)} (TRL's packing options)")
    if values.get("use_flash_attention_2") and values.get("attn_implementation") not in (None, "flash_attention_2"):
        raise RecipeError(f"use_flash_attention_2: true contradicts attn_implementation: {values['attn_implementation']}; keep one")


SFT = RecipeKind(
    SFTRecipe, output_dir="outputs/sft", check_values=_check_sft_values,
    mixer_required="dataset_mixer is required: a mapping {dataset: fraction} of conversation datasets (rows with 'messages')",
    foreign="is not an SFT key: it belongs to a preference recipe (simpo train or simpo pipeline)",
    foreign_keys=frozenset(TRAINING.known_keys),
    excluded=_NOT_SFT,
)
build_sft_recipe = SFT.build
load_sft_recipe = SFT.load
