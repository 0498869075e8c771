"""Loading a recipe's model and tokenizer (a folder, a hub name, or a bundled alias)."""

from __future__ import annotations

from pathlib import Path

from ..config.recipe import ModelConfig
from ..config.recipe_kind import MODEL_FILES
from ..errors import RecipeError
from .bundled import BUNDLED, bundled_model_dir
from .precision import DTYPES, resolve_dtype


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


def load_model(config: ModelConfig, dtype: str | None = None):
    """The causal LM of `config`, its weights in `dtype` (an already resolved name) when given, else in
    the recipe's `torch_dtype`."""
    from transformers import AutoModelForCausalLM

    name = resolve_model_path(config.model_name_or_path)
    path = Path(name)
    if path.is_dir() and not any((path / file).is_file() for file in MODEL_FILES):
        raise RecipeError(f"model_name_or_path: the folder {path} holds a tokenizer but no model (no config.json); "
                          "it serves `simpo inspect` only")
    kwargs = {"dtype": DTYPES[dtype or resolve_dtype(config.torch_dtype, "torch_dtype")]}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    return AutoModelForCausalLM.from_pretrained(
        name,
        revision=config.model_revision,
        trust_remote_code=config.trust_remote_code,
        **kwargs,
    )
