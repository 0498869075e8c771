"""The range of each numeric recipe key, checked before anything loads.

A limit is (low, whether low itself is allowed, high or None); high is never allowed. The loss
hyperparameters' ranges live beside the losses (`training.losses.HYPERPARAMETER_LIMITS`); these are
the training loop's and the data path's. A key left unset (None) is not checked.
"""

from __future__ import annotations

from typing import Any

from ..errors import RecipeError

SEED = (0, True, 2**32)  # numpy's and torch's seed range

LIMITS = {
    "learning_rate": (0, True, None), "weight_decay": (0, True, None), "max_grad_norm": (0, True, None),
    "adam_beta1": (0, True, 1), "adam_beta2": (0, True, 1), "adam_epsilon": (0, False, None),
    "num_train_epochs": (0, False, None), "warmup_steps": (0, True, None), "label_smoothing_factor": (0, True, 1),
    "per_device_train_batch_size": (1, True, None), "per_device_eval_batch_size": (1, True, None),
    "gradient_accumulation_steps": (1, True, None), "eval_accumulation_steps": (1, True, None),
    # Steps below 1 are a fraction of the run's steps (transformers' rule).
    "logging_steps": (0, False, None), "save_steps": (0, False, None), "eval_steps": (0, False, None),
    "save_total_limit": (1, True, None), "dataloader_num_workers": (0, True, None), "dataloader_prefetch_factor": (1, True, None),
    "torch_empty_cache_steps": (1, True, None), "neftune_noise_alpha": (0, False, None),
    "seed": SEED, "data_seed": SEED,
    "max_length": (1, True, None), "max_prompt_length": (1, True, None), "logps_chunk_size": (0, True, None),
    "preprocessing_num_workers": (1, True, None),
    "max_seq_length": (2, True, None),  # simpo sft: a conversation needs a token before the first it scores
    "lora_r": (1, True, None), "lora_alpha": (0, False, None), "lora_dropout": (0, True, 1),
}


def check_range(key: str, value: Any, limit: tuple) -> None:
    """A `RecipeError` naming `key` when the (already converted) `value` is outside `limit`."""
    low, low_ok, high = limit
    if value is None or (value > low or (low_ok and value == low)) and (high is None or value < high):
        return
    if high is not None:
        bound = f"in [{low}, {high})" if low_ok else f"in ({low}, {high})"
    else:
        bound = f"{'>=' if low_ok else '>'} {low}"
    raise RecipeError(f"{key} must be {bound}, got {value}")


def check_limits(values: dict[str, Any]) -> None:
    for key, limit in LIMITS.items():
        if key in values:
            check_range(key, values[key], limit)
    if values.get("max_steps", -1) != -1 and values["max_steps"] <= 0:
        raise RecipeError(f"max_steps must be a positive number of steps, or -1 to train for num_train_epochs; got {values['max_steps']}")
