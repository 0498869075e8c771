"""LoRA adapters on the policy (`use_peft: true`), through `peft`.

`add_adapters` wraps a causal LM in a `PeftModel` whose only trainable weights are the adapters'
`lora_A` (r x in) and `lora_B` (out x r) of each targeted linear layer (`lora_target_modules`;
unset: every linear layer of the decoder but the output head, peft's "all-linear"). `lora_B`
starts at zero, so the adapted model starts equal to its base.

The reference of the losses that need one is the policy with its adapters disabled
(`reference_mode`): the base weights, never updated, are exactly the initial policy's, so no second
copy of the model is held.

Target names are checked against the model's linear layers before any weights load (a model built
on the meta device from its config), so a misspelt name fails in one line, listing the names the
model has. Loading a trained adapter folder for inference is `models.loading.load_model`'s.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from ..errors import RecipeError
from .bundled import BUNDLED, cache_home

# peft matches a target name to a module whose qualified name equals it or ends with "." + it.
ALL_LINEAR = "all-linear"


def linear_module_names(model: nn.Module) -> list[str]:
    """The last part of the name of each `nn.Linear` of `model` (`q_proj`, ..., `lm_head`), sorted."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear) and name})


def check_target_modules(model: nn.Module, targets: list[str] | None) -> None:
    """A `RecipeError` naming each target that matches no linear layer of `model`, and the names it has."""
    if targets is None:
        return
    if not targets:
        raise RecipeError(f"lora_target_modules is empty; name linear layers ({', '.join(linear_module_names(model))}), "
                          "or leave it unset for all of them")
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    missing = [target for target in targets if not any(name == target or name.endswith("." + target) for name in linear)]
    if missing:
        raise RecipeError(f"lora_target_modules: {', '.join(map(repr, missing))} matches no linear layer of the model; "
                          f"its linear layers are {', '.join(linear_module_names(model))}")


def check_targets_before_loading(model_config, targets: list[str] | None) -> None:
    """`check_target_modules` on the model of `model_config` built on the meta device: its config read, no weights."""
    if targets is None:
        return
    from transformers import AutoModelForCausalLM

    from .loading import load_model_config

    config = load_model_config(model_config)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=model_config.trust_remote_code)
    check_target_modules(skeleton, targets)


def portable_name(name_or_path: str) -> str:
    """How an adapter names its base: the bundled alias for its cache folder, an absolute path for a
    folder, else the hub name."""
    path = Path(name_or_path)
    if not path.is_dir():
        return name_or_path
    for alias in BUNDLED:
        if path.resolve() == (cache_home() / "models" / alias).resolve():
            return alias
    return str(path.resolve())


def add_adapters(model, args):
    """`model` wrapped in a `PeftModel` with fresh LoRA adapters of the recipe's `lora_*` keys."""
    from peft import LoraConfig, get_peft_model

    check_target_modules(model, args.lora_target_modules)
    config = LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, bias="none", task_type="CAUSAL_LM",
        target_modules=list(args.lora_target_modules) if args.lora_target_modules is not None else ALL_LINEAR,
    )
    adapted = get_peft_model(model, config)
    adapted.peft_config["default"].base_model_name_or_path = portable_name(model.name_or_path)
    if args.activation_checkpointing:
        # Checkpointed layers need an input that requires grad, and a frozen embedding gives none.
        adapted.enable_input_require_grads()
    return adapted


def is_adapted(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def reference_mode(model):
    """A context in which `model` computes the reference: its adapters disabled (a model without adapters: as it is)."""
    return model.disable_adapter() if is_adapted(model) else contextlib.nullcontext()

