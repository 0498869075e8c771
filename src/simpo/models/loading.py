"""Loading a recipe's model and tokenizer (a folder, a hub name, or a bundled alias).

A LoRA adapter folder (`adapter_config.json`, what `use_peft: true` trains) is accepted wherever a
model is: its base (`base_model_name_or_path`) loads, the adapter is merged into it in memory (as
fast as a full model from then on), and the folder's own tokenizer and generation config are used
when it has them. This module is the one place that does so; generation, evaluation, chat and
`simpo merge` all load through `load_model`. A model folder whose save simpo began and never
finished (`INCOMPLETE` in it, `training/run_folder.py`) is refused by every function here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config.recipe import ModelConfig
from ..config.recipe_kind import MODEL_FILES, check_model_json
from ..errors import RecipeError, read_json
from ..training.run_folder import check_whole
from .bundled import BUNDLED, bundled_model_dir
from .precision import DTYPES, resolve_dtype

ADAPTER_CONFIG = "adapter_config.json"


def resolve_model_path(name: str) -> str:
    """The folder or hub name to load; a model folder simpo began saving and never finished is
    refused, and so is one whose JSON files are damaged (named, instead of transformers' traceback)."""
    if name in BUNDLED:
        return str(bundled_model_dir(name))
    check_whole(name)
    folder = Path(name).expanduser()
    check_model_json(folder)
    return name


def adapter_base(name: str) -> str | None:
    """The base model an adapter folder was trained on (its `base_model_name_or_path`: a folder, a hub
    name or a bundled alias); None when `name` is not an adapter folder."""
    path = Path(name).expanduser()
    if name in BUNDLED or not (path / ADAPTER_CONFIG).is_file():
        return None
    check_whole(path)
    base = read_json(path / ADAPTER_CONFIG, dict, RecipeError, "a LoRA adapter's config").get("base_model_name_or_path")
    if not base or not isinstance(base, str):
        raise RecipeError(f"{path / ADAPTER_CONFIG} names no base model (base_model_name_or_path: {base!r:.80})")
    if base not in BUNDLED and base.startswith(("/", ".", "~")) and not Path(base).expanduser().is_dir():
        raise RecipeError(f"the LoRA adapter {path} was trained on {base}, which is not here: "
                          "put that model back, or edit base_model_name_or_path in its adapter_config.json")
    return base


def load_model_config(config: ModelConfig):
    """The `transformers` config of the model (of the base, for an adapter folder)."""
    from transformers import AutoConfig

    base = adapter_base(config.model_name_or_path)
    if base is not None:  # the base may be an adapter folder in turn
        return load_model_config(dataclasses.replace(config, model_name_or_path=base, model_revision="main"))
    name = resolve_model_path(config.model_name_or_path)
    return AutoConfig.from_pretrained(name, revision=config.model_revision, trust_remote_code=config.trust_remote_code)


def load_tokenizer(config: ModelConfig):
    from transformers import AutoTokenizer

    base = adapter_base(config.model_name_or_path)
    if base is not None and not (Path(config.model_name_or_path) / "tokenizer_config.json").is_file():
        return load_tokenizer(dataclasses.replace(config, model_name_or_path=base, model_revision="main"))  # an adapter saved without one
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
    the recipe's `torch_dtype`; for an adapter folder, its base with the adapter merged in."""
    from transformers import AutoModelForCausalLM

    base = adapter_base(config.model_name_or_path)
    if base is not None:
        return _merged(config, base, dtype)
    name = resolve_model_path(config.model_name_or_path)
    path = Path(name)
    if path.is_dir() and not any((path / file).is_file() for file in MODEL_FILES):
        raise RecipeError(f"model_name_or_path: the folder {path} holds a tokenizer but no model (no config.json); "
                          "it serves `simpo inspect` only")
    kwargs = {"dtype": DTYPES[dtype or resolve_dtype(config.torch_dtype, "torch_dtype")]}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    from safetensors import SafetensorError

    try:
        return AutoModelForCausalLM.from_pretrained(name, revision=config.model_revision, trust_remote_code=config.trust_remote_code, **kwargs)
    except SafetensorError as err:
        raise RecipeError(f"model_name_or_path: the weights of {name} cannot be read ({err}); a file is damaged or cut short: "
                          "copy, download or train the model again") from None


def _merged(config: ModelConfig, base: str, dtype: str | None):
    """The base of the adapter folder `config.model_name_or_path` with the adapter merged into its weights."""
    from peft import PeftModel
    from transformers import GenerationConfig

    folder = Path(config.model_name_or_path).expanduser()
    try:
        model = load_model(dataclasses.replace(config, model_name_or_path=base, model_revision="main"), dtype)
    except OSError as err:  # a hub name that is neither cached nor reachable
        raise RecipeError(f"the base model {base} of the LoRA adapter {folder} cannot be loaded "
                          f"({str(err).splitlines()[0]})") from None
    try:
        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as err:  # a damaged adapter_config.json or adapter weights
        reason = " ".join(str(err).split())[:200]
        raise RecipeError(f"the LoRA adapter {folder} cannot be loaded onto {base} ({type(err).__name__}: {reason}); "
                          f"its {ADAPTER_CONFIG} or adapter weights are damaged: train it again") from None
    if (folder / "generation_config.json").is_file():  # the trained run's stop tokens
        model.generation_config = GenerationConfig.from_pretrained(folder)
    # Named after the adapter, not its base: a cache keyed on the model's source tells them apart.
    model.config._name_or_path = model.name_or_path = str(folder.resolve())
    return model
