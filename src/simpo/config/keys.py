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
    from .pipeline import SECTIONS
    from .recipe import OWN_TRAINING_KEYS, DataConfig, ModelConfig, SimPOConfig

    parts = [
        "# Recipe keys\n",
        "Generated from the configuration classes (`python -m simpo.config.keys > docs/recipe-keys.md`);"
        " `simpo COMMAND --help` prints the same. A training recipe also takes every"
        " `transformers.TrainingArguments` field (`learning_rate`, `bf16`, ...), listed by `simpo train --help`.\n",
        "## Training recipe: model\n", markdown_table(key_rows(ModelConfig)) + "\n",
        "## Training recipe: data\n", markdown_table(key_rows(DataConfig)) + "\n",
        "## Training recipe: loss and data path\n", markdown_table(key_rows(SimPOConfig, names=OWN_TRAINING_KEYS)) + "\n",
        "## Pipeline recipe\n",
        "A training recipe plus `run_dir` and one mapping per stage; `--section.key value` overrides a key.\n",
    ]
    for name, cls in SECTIONS.items():
        parts += [f"### `{name}`\n", markdown_table(key_rows(cls, prefix=f"{name}.")) + "\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(markdown())
