"""Recipe keys described once, on their dataclass fields, for `simpo COMMAND --help` and the docs.

Every key is a dataclass field (made with `recipe_key`) whose `metadata["help"]` holds one line of meaning (the convention of
`transformers.TrainingArguments`, whose own fields are described the same way). `key_rows` reads
them back as (name, type, default, help), which the command-line help prints and
`docs/recipe-keys.md` is generated from (`python -m simpo.config.keys > docs/recipe-keys.md`).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any


def recipe_key(default: Any = None, help: str = "", factory=None):
    """A recipe key: its default (or a factory for a mutable one) and one line of meaning."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _type_name(field: dataclasses.Field) -> str:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    return kind.replace(" | None", "").replace("Optional[", "").replace("typing.", "").replace(" | ", " or ")


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    return "-" if value in (None, "") else str(value)


def _first_line(text: str) -> str:
    return " ".join(text.split()).split(". ")[0].rstrip(".")


def key_rows(cls, prefix: str = "", names: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) of each init field of `cls` (only `names`, in that order, when given)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    chosen = [fields[name] for name in names] if names is not None else list(fields.values())
    return [(prefix + f.name, _type_name(f), _default(f), _first_line(f.metadata.get("help", ""))) for f in chosen]


def text_table(rows: list[tuple[str, str, str, str]]) -> str:
    width = max(len(name) for name, *_ in rows) + 2
    return "\n".join(f"  {name:<{width}}{help_} ({kind}; default {default})" for name, kind, default, help_ in rows)


def markdown_table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {default} | {help_} |" for name, kind, default, help_ in rows]
    return "\n".join(lines)


def markdown() -> str:
    """docs/recipe-keys.md: every key of simpo's own, by section, from the fields' metadata."""
    from .pipeline import PIPELINE_KEY_ROWS, SECTIONS
    from .recipe import OWN_TRAINING_KEYS, DataConfig, ModelConfig, SimPOConfig
    from .sft import MODEL_KEYS, OWN_SFT_KEYS, SFTConfig, SFTDataConfig, SFTModelConfig

    parts = [
        "# Recipe keys\n",
        "Generated from the configuration classes (`python -m simpo.config.keys > docs/recipe-keys.md`);"
        " `simpo COMMAND --help` prints the same. A training recipe also takes every"
        " `transformers.TrainingArguments` field (`learning_rate`, `bf16`, ...), listed by `simpo train --help`.\n",
        "## Training recipe: model\n", markdown_table(key_rows(ModelConfig)) + "\n",
        "## Training recipe: data\n", markdown_table(key_rows(DataConfig)) + "\n",
        "## Training recipe: loss and data path\n", markdown_table(key_rows(SimPOConfig, names=OWN_TRAINING_KEYS)) + "\n",
        "## SFT recipe (`simpo sft`)\n",
        "The model and data keys above (but `ref_model_name_or_path`), these, and every `TrainingArguments` field.\n",
        markdown_table([row for row in key_rows(SFTModelConfig, names=MODEL_KEYS) if row[0] not in _names(ModelConfig)]
                       + [row for row in key_rows(SFTDataConfig) if row[0] not in _names(DataConfig)]
                       + key_rows(SFTConfig, names=OWN_SFT_KEYS)) + "\n",
        "## Pipeline recipe\n",
        "A training recipe plus `run_dir` and one mapping per stage; `--section.key value` overrides a key.\n",
        markdown_table(PIPELINE_KEY_ROWS) + "\n",
    ]
    for name, cls in SECTIONS.items():
        parts += [f"### `{name}`\n", markdown_table(key_rows(cls, prefix=f"{name}.")) + "\n"]
    return "\n".join(parts + [_values_section()])


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _values_section() -> str:
    """How values are read (`config.types`) and the ranges checked (`config.limits`, the losses' own)."""
    from ..training.losses import HYPERPARAMETER_LIMITS
    from .limits import LIMITS

    def bound(low, low_ok, high) -> str:
        if high is not None:
            return f"[{low}, {high})" if low_ok else f"({low}, {high})"
        return f"{'>=' if low_ok else '>'} {low}"

    rows = [f"| `{key}` | {bound(*limit)} |" for key, limit in sorted({**LIMITS, **HYPERPARAMETER_LIMITS}.items())]
    return "\n".join([
        "## How values are read\n",
        "Every value, in a file or after `--key`, is converted to its key's type above, as `HfArgumentParser`"
        " does: `1e-6` (text to YAML) is the number 1e-06, `\"100\"` is 100 for a whole-number key, `true`/`yes`/`1`"
        " are true for a boolean key, and `no` (false to YAML) is `\"no\"` for a strategy key. Numbers must be"
        " finite. What does not convert stops the command with the key, the value and the type expected,"
        " before anything loads. `max_steps` is -1 (use `num_train_epochs`) or positive. Ranges checked:\n",
        "| key | range |", "|---|---|", *rows, "",
    ])


if __name__ == "__main__":
    sys.stdout.write(markdown())
