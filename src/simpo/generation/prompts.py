"""Prompts for generation: reading prompt rows, rendering them with the chat template, checks of
their text (no control tokens of the template) and length.

Prompts are rendered with the model's chat template (`add_generation_prompt=True`; a system message
is folded into the first user turn when the template has no system role); generation stops at the
template's end-of-turn token(s). Rows are named counted from 1 (`prompts.jsonl, row 3`), as
`data.dataset` names preference rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass

from ..data.chat import check_control_tokens, control_tokens, fold_system, render, stop_token_ids, template_shows_system
from ..data.rows import read_prompt
from ..data.sources import load_split
from ..errors import DataError, RecipeError

logger = logging.getLogger("simpo")

# Fields of an input row that the later stages write themselves, so they are not passed through.
RESERVED = {"prompt", "prompt_id", "chosen", "rejected", "messages", "all_generated_responses", "all_rm_scores", "seeds", "row"}


@dataclass
class PromptRow:
    row: int  # index of the row in its source, counted from 0 (its messages say `row {row + 1}`)
    prompt_id: str
    prompt: str | list[dict]
    messages: list[dict]
    extra: dict


def prompt_messages(prompt, where: str) -> list[dict]:
    """A prompt (a string, or {role, content} messages in order ending with a user turn, as
    `data.rows.read_prompt` reads it) as messages; a prompt generation cannot use raises `DataError`
    naming `where`."""
    messages = read_prompt(prompt, where)
    if not any(turn["content"].strip() for turn in messages):
        raise DataError(f"{where}: empty prompt")
    return messages


def read_prompts(source: str, split: str, max_prompts: int | None = None, unique: bool = False) -> tuple[list[PromptRow], Counter]:
    """Usable prompt rows of a source, and the reasons for the ones skipped (each logged by row).
    `unique`: a prompt equal to an earlier row's is skipped too, as the official on-policy generation
    de-duplicates its prompts (so no prompt makes two pairs)."""
    loaded = load_split(source, split)
    if loaded is None:
        raise RecipeError(f"prompts source {source} has no split {split!r}")
    label, rows = loaded
    if "prompt" not in rows.column_names:
        raise RecipeError(f"{label}: rows need a 'prompt' column (text or a list of messages); its columns: {rows.column_names}")
    if max_prompts is not None:
        rows = rows.select(range(min(max_prompts, len(rows))))
    kept, skipped, seen = [], Counter(), set()
    for number, row in enumerate(rows):
        try:
            messages = prompt_messages(row.get("prompt"), f"{label}, row {number + 1}")
        except DataError as err:
            logger.warning("skipped: %s", err)
            skipped["empty prompt" if str(err).endswith(": empty prompt") else "not a prompt"] += 1
            continue
        text = json.dumps(row["prompt"])
        if unique and text in seen:
            skipped["duplicate prompt"] += 1
            continue
        seen.add(text)
        prompt_id = row.get("prompt_id") or hashlib.sha256(text.encode()).hexdigest()[:16]
        extra = {key: value for key, value in row.items() if key not in RESERVED}
        kept.append(PromptRow(number, str(prompt_id), row["prompt"], messages, extra))
    return kept, skipped


class PromptRenderer:
    """Token ids of prompts under the model's chat template, the model's stop tokens, and the
    template's control tokens (`data.chat.control_tokens`), which prompt text must not hold."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.fold_system = not template_shows_system(tokenizer)
        self.stop_ids = stop_token_ids(tokenizer)
        self.control_tokens = control_tokens(tokenizer)

    def text(self, messages: list[dict]) -> str:
        """The prompt as the model reads it: the chat template's text, ending in the generation prompt."""
        if self.fold_system:
            messages = fold_system(messages)
        return render(self.tokenizer, messages, add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        """The token ids of a rendered prompt (its special tokens are the template's own)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def ids(self, messages: list[dict]) -> list[int]:
        return self.encode(self.text(messages))


def check_lengths(rows: list[PromptRow], renderer: PromptRenderer, limit: int, label: str) -> tuple[list[PromptRow], list[list[int]], Counter]:
    """The rows with their token ids, less (logged by row) the prompts whose tokens leave no room for
    `max_new_tokens`; a prompt holding a control token of the template raises `DataError`."""
    kept, ids, skipped = [], [], Counter()
    for row in rows:
        check_control_tokens(renderer.control_tokens, row.messages, f"{label}, row {row.row + 1}")
        prompt_ids = renderer.ids(row.messages)
        if len(prompt_ids) > limit:
            logger.warning("%s, row %d: skipped: too long for the model (%d prompt tokens, at most %d)", label, row.row + 1, len(prompt_ids), limit)
            skipped["too long for the model"] += 1
            continue
        kept.append(row)
        ids.append(prompt_ids)
    return kept, ids, skipped
