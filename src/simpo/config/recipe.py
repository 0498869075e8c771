"""The training recipe (`simpo train`): the official SimPO `training_configs` keys and ours.

Each key belongs to exactly one of three dataclasses: `ModelConfig` (what to load), `DataConfig`
(what to train on) or `SimPOConfig` (the loss and every `transformers.TrainingArguments` field).
Reading, key names, value types and the checks every recipe needs are `config.recipe_kind`'s; the
loss and length checks here. Everything is validated before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from transformers import TrainingArguments

from ..data.encode import TOKENIZATIONS
from ..errors import RecipeError
from ..training.losses import HYPERPARAMETER_LIMITS, LOSSES
from .keys import recipe_key
from .limits import check_range
from .recipe_kind import ALIASES, PIPELINE_KEYS, RecipeKind, parse_overrides, read_recipe_file  # noqa: F401 (re-exported)

REFERENCE_KEYS = ("ref_model_name_or_path", "precompute_ref_logps")  # only losses with a reference take them
_LOSS_HYPERPARAMETERS = sorted({key for loss in LOSSES.values() for key in loss.keys})
TRUNCATION_MODES = ("keep_end", "keep_start")
ON_NONFINITE = ("stop", "skip")  # what a non-finite loss or gradient norm does (training.nonfinite)
LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")  # only use_peft: true takes them


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
    dataset_mixer: dict[str, float] = recipe_key(help="{source: fraction}: files, folders or hub datasets; a fraction below 1 takes the first rows of a training source (required)", factory=dict)
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
    on_nonfinite: str = recipe_key("stop", "What a non-finite loss or gradient norm does: stop (the run ends naming the step and its rows, the last checkpoint intact) or skip (that step's update is skipped and counted in nonfinite_skips)")
    use_peft: bool = recipe_key(False, "Train LoRA adapters (peft) instead of every weight: the output folder holds the adapter (simpo merge writes a full model); a reference loss's reference is the model with its adapters disabled (docs/lora.md)")
    lora_r: int = recipe_key(16, "LoRA's rank r (use_peft)")
    lora_alpha: int = recipe_key(32, "LoRA's scale numerator: the adapter's update is scaled by lora_alpha / lora_r (use_peft)")
    lora_dropout: float = recipe_key(0.05, "Dropout on the adapters' input, in [0, 1), applied only under disable_dropout: false (which zeroes every dropout, LoRA's too; use_peft)")
    lora_target_modules: list[str] | None = recipe_key(None, "Names of the linear layers that get adapters ([q_proj, v_proj], say); unset: every linear layer but the output head (use_peft)")
    overwrite_output_dir: bool = recipe_key(False, "Start over in an output_dir that holds a run: its contents are first moved aside to OUTPUT_DIR.previous-N (otherwise a run made with another recipe is refused, the same recipe resumes)")
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


# simpo's own training keys, in the order `--help` and the docs list them.
OWN_TRAINING_KEYS = [f.name for f in dataclasses.fields(SimPOConfig) if f.init and "help" in f.metadata and f.name in SimPOConfig.__annotations__]


@dataclass
class Recipe:
    """A recipe built; the types of model, data and training are its kind's sections (`RecipeKind.sections`)."""

    model: ModelConfig
    data: DataConfig
    training: SimPOConfig
    raw: dict[str, Any]  # the merged recipe as given (aliases resolved), saved beside the model

    def resolved(self) -> dict[str, Any]:
        """Every setting as the run will use it, defaults included (`--dry-run` prints it)."""
        return {"model": dataclasses.asdict(self.model), "data": dataclasses.asdict(self.data), "training": self.training.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.resolved(), indent=2, default=str)


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


def _check_lora_values(values: dict[str, Any]) -> None:
    """The LoRA keys are set only with use_peft (their ranges are in `config.limits`; the target names are
    checked against the model before its weights load, `models.lora.check_targets_before_loading`)."""
    set_keys = [key for key in LORA_KEYS if key in values]
    if set_keys and not values.get("use_peft"):
        raise RecipeError(f"{', '.join(set_keys)} {'applies' if len(set_keys) == 1 else 'apply'} to LoRA only; add use_peft: true, or remove it")
    targets = values.get("lora_target_modules")
    if targets is not None and (not targets or not all(name.strip() for name in targets)):
        raise RecipeError(f"lora_target_modules {targets!r} names no layer; name linear layers ([q_proj, v_proj], say), "
                          "or leave it unset for every linear layer but the output head")


def _check_training_values(values: dict[str, Any]) -> None:
    """The training recipe's own checks (after those of every kind): the loss keys, truncation, the length limits."""
    _check_loss_values(values)
    mode = values.get("truncation_mode", "keep_end")
    if mode not in TRUNCATION_MODES:
        raise RecipeError(f"truncation_mode must be one of {', '.join(TRUNCATION_MODES)}, got {mode!r}")
    _check_lora_values(values)
    on_nonfinite = values.get("on_nonfinite", "stop")
    if on_nonfinite not in ON_NONFINITE:
        raise RecipeError(f"on_nonfinite must be one of {', '.join(ON_NONFINITE)}, got {on_nonfinite!r}")
    if on_nonfinite == "skip" and values.get("deepspeed"):
        raise RecipeError("on_nonfinite: skip cannot skip an update under deepspeed, whose engine steps the optimizer "
                          "inside backward; use on_nonfinite: stop")
    if values.get("overwrite_output_dir") and values.get("resume_from_checkpoint") not in (None, "false"):
        raise RecipeError(f"overwrite_output_dir: true starts over, resume_from_checkpoint: {values['resume_from_checkpoint']} "
                          "continues a run; keep one")
    if values.get("tokenization", "template") not in TOKENIZATIONS:
        raise RecipeError(f"tokenization must be one of {', '.join(TOKENIZATIONS)}, got {values['tokenization']!r}")
    max_length, max_prompt_length = values.get("max_length", 1024), values.get("max_prompt_length", 512)
    if max_prompt_length >= max_length:
        raise RecipeError(
            f"max_prompt_length ({max_prompt_length}) must be smaller than max_length ({max_length}): "
            "otherwise a prompt can leave no room for its response"
        )


TRAINING = RecipeKind(
    Recipe, output_dir="outputs/simpo", check_values=_check_training_values,
    mixer_required="dataset_mixer is required: a mapping {dataset: fraction}, e.g. {data/pairs: 1.0}",
    foreign="belongs to a pipeline recipe: run it with `simpo pipeline` (or one stage)",
    pipeline_sections=True,
)
KNOWN_KEYS = TRAINING.known_keys
FIELD_TYPES = TRAINING.field_types
build_recipe = TRAINING.build
load_recipe = TRAINING.load
