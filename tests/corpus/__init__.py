"""The corpus of bad inputs: recipes, data rows, prompt files and command lines that a user can get
wrong, each with the part of the one-line error it must give (the key, file or row it names).

`tests/test_bad_inputs.py` runs every case through `simpo.cli.main` in a folder of its own and asserts
exit status 2, one `simpo: error:` line holding `expect`, no traceback, and no file written. Grow the
corpus with every bad input found: one `Case` per input, in the module of its kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

REMOVE = object()  # a recipe change that deletes the key


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # "{repo}" in a token is the repository's root
    expect: str  # a part of the error line: what it names and says to do
    files: dict = field(default_factory=dict)  # path in the case's folder -> text ("{repo}" replaced) or bytes
    env: dict = field(default_factory=dict)  # environment variables set for the case; None: unset


# A training recipe that runs: the bundled model (only its tokenizer loads before the data is checked),
# the bundled pairs, output in ./out.
TRAIN = {
    "model_name_or_path": "smollm2-135m-instruct",
    "dataset_mixer": {"{repo}/data/verifiable-prefs": 1.0},
    "output_dir": "out",
    "max_length": 128,
    "max_prompt_length": 64,
    "learning_rate": 1.0e-5,
    "per_device_train_batch_size": 2,
    "max_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
}

# A pipeline recipe that runs: the bundled prompts, a programmatic reward, everything in ./run.
PIPELINE = {
    **{key: value for key, value in TRAIN.items() if key not in ("dataset_mixer", "output_dir")},
    "run_dir": "run",
    "generate": {"prompts": "{repo}/data/verifiable-prompts", "max_prompts": 4, "seeds": [1, 2], "max_new_tokens": 8},
    "annotate": {"rewards": [{"type": "numeric_answer"}]},
    "binarize": {"test_size": 0.25},
    "evaluate": {"max_prompts": 2, "max_new_tokens": 8},
    "eval": {"benchmarks": []},
}


def _changed(base: dict, changes: dict) -> dict:
    """`base` with `changes` applied; a dotted key changes one key of a section; REMOVE deletes."""
    values = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in changes.items():
        section, dot, name = key.partition(".")
        target, name = (values.setdefault(section, {}), name) if dot else (values, key)
        if value is REMOVE:
            target.pop(name, None)
        else:
            target[name] = value
    return values


def recipe_text(values: dict) -> str:
    return yaml.safe_dump(values, sort_keys=False)


def train_case(name: str, expect: str, changes: dict | None = None, args: tuple = (), files: dict | None = None) -> Case:
    """`simpo train recipe.yaml ARGS` with the working recipe changed by `changes`."""
    return Case(name, ("train", "recipe.yaml", *args), expect,
                {"recipe.yaml": recipe_text(_changed(TRAIN, changes or {})), **(files or {})})


def pipeline_case(name: str, expect: str, changes: dict | None = None, args: tuple = (), files: dict | None = None,
                  command: str = "pipeline", env: dict | None = None) -> Case:
    """`simpo COMMAND recipe.yaml ARGS` (a pipeline stage) with the working pipeline recipe changed."""
    return Case(name, (command, "recipe.yaml", *args), expect,
                {"recipe.yaml": recipe_text(_changed(PIPELINE, changes or {})), **(files or {})}, env or {})


def rows_case(name: str, expect: str, content: str | bytes, file: str = "pairs.jsonl") -> Case:
    """`simpo train` on a data file holding `content`."""
    return train_case(name, expect, {"dataset_mixer": {file: 1.0}}, files={file: content})


def prompts_case(name: str, expect: str, content: str | bytes, changes: dict | None = None, file: str = "prompts.jsonl") -> Case:
    """`simpo pipeline` on a prompt file holding `content` (it must fail before generating); the
    held-out prompts stay the bundled ones (a single prompt file serves the train split only)."""
    changes = {"generate.prompts": file, "evaluate.prompts": "{repo}/data/verifiable-prompts", **(changes or {})}
    return pipeline_case(name, expect, changes, files={file: content})
