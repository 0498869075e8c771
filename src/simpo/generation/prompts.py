"""Prompts for generation: reading prompt rows, rendering them with the chat template, length checks.

Prompts are rendered with the model's chat template (`add_generation_prompt=True`; a system message
is folded into the first user turn when the template has no system role); generation stops at the
template's end-of-turn token(s).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass

from ..data.chat import fold_system, render, stop_token_ids, template_shows_system
from ..data.rows import as_messages
from ..data.sources import load_split
from ..errors import DataError, RecipeError

logger = logging.getLogger("simpo")

# Fields of an input row that the later stages write themselves, so they are not passed through.
RESERVED = {"prompt", "prompt_id", "chosen", "rejected", "messages", "all_generated_responses", "all_rm_scores", "seeds", "row"}


@dataclass
class PromptRow:
    row: int  # number of the row in its source, counted from 0
    prompt_id: str
    prompt: str | list[dict]
    messages: list[dict]
    extra: dict


def prompt_messages(prompt, where: str) -> list[dict]:
    """A prompt (a string, or a list of {role, content} ending with a user turn) as messages; a
    prompt generation cannot use raises `DataError` naming `where`."""
    messages = as_messages(prompt, "prompt", where)
    if messages[-1]["role"] != "user":
        raise DataError(f"{where}: the prompt ends with a {messages[-1]['role']!r} turn; a prompt ends with the user's turn")
    if not any(turn["content"].strip() for turn in messages):
        raise DataError(f"{where}: empty prompt")
    return messages


def read_prompts(source: str, split: str, max_prompts: int | None = None) -> tuple[list[PromptRow], Counter]:
    """Usable prompt rows of a source, and the reasons for the ones skipped (each logged by row)."""
    loaded = load_split(source, split)
    if loaded is None:
        raise RecipeError(f"prompts source {source} has no split {split!r}")
    label, rows = loaded
    if "prompt" not in rows.column_names:
        raise RecipeError(f"{label}: rows need a 'prompt' column (text or a list of messages); its columns: {rows.column_names}")
    if max_prompts is not None:
        rows = rows.select(range(min(max_prompts, len(rows))))
    kept, skipped = [], Counter()
    for number, row in enumerate(rows):
        try:
            messages = prompt_messages(row.get("prompt"), f"{label}, row {number}")
        except DataError as err:
            logger.warning("skipped: %s", err)
            skipped["empty prompt" if str(err).endswith(": empty prompt") else "not a prompt"] += 1
            continue
        prompt_id = row.get("prompt_id") or hashlib.sha256(json.dumps(row["prompt"]).encode()).hexdigest()[:16]
        extra = {key: value for key, value in row.items() if key not in RESERVED}
        kept.append(PromptRow(number, str(prompt_id), row["prompt"], messages, extra))
    return kept, skipped


class PromptRenderer:
    """Token ids of prompts under the model's chat template, and the model's stop tokens."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.fold_system = not template_shows_system(tokenizer)
        self.stop_ids = stop_token_ids(tokenizer)

    def ids(self, messages: list[dict]) -> list[int]:
        if self.fold_system:
            messages = fold_system(messages)
        text = render(self.tokenizer, messages, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def check_lengths(rows: list[PromptRow], renderer: PromptRenderer, limit: int, label: str) -> tuple[list[PromptRow], list[list[int]], Counter]:
    """Drop (and log by row) prompts whose tokens leave no room for `max_new_tokens`."""
    kept, ids, skipped = [], [], Counter()
    for row in rows:
        prompt_ids = renderer.ids(row.messages)
        if len(prompt_ids) > limit:
            logger.warning("%s, row %d: skipped: too long for the model (%d prompt tokens, at most %d)", label, row.row, len(prompt_ids), limit)
            skipped["too long for the model"] += 1
            continue
        kept.append(row)
        ids.append(prompt_ids)
    return kept, ids, skipped
