"""One preference row, in any of the layouts users bring, reduced to prompt messages + two answers.

Accepted layouts (DESIGN.md section 2):
- UltraFeedback / `gemma2-ultrafeedback-armorm`: `prompt` string, `chosen` and `rejected` full
  conversations (the prompt turns, then the answer);
- TRL standard: `prompt`, `chosen`, `rejected` strings (the prompt becomes one user turn);
- TRL conversational: `prompt` message list, `chosen` and `rejected` lists of the answer turn;
- no `prompt` column: `chosen` and `rejected` full conversations; the prompt is all turns but the last.

Structural faults (a missing key, a wrong type, a conversation that does not end with the
assistant) raise `DataError` naming the source and row. Rows that are well formed but useless for
training (an empty answer, chosen identical to rejected) are dropped and counted by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError


@dataclass
class Pair:
    prompt: list[dict]
    chosen: dict
    rejected: dict


def as_messages(value, key: str, where: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "assistant" if key != "prompt" else "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: {key!r} must be a string or a non-empty list of messages, got {value!r:.80}")
    for turn in value:
        if not (isinstance(turn, dict) and isinstance(turn.get("role"), str) and isinstance(turn.get("content"), str)):
            raise DataError(f"{where}: {key!r} has a message that is not {{'role': str, 'content': str}}: {turn!r:.80}")
    return [{"role": turn["role"], "content": turn["content"]} for turn in value]


def read_pair(row: dict, where: str) -> Pair | str:
    """The row as a `Pair`, or the reason to drop it; raises `DataError` on a malformed row."""
    for key in ("chosen", "rejected"):
        if row.get(key) is None:
            raise DataError(f"{where}: missing {key!r} (rows need 'chosen' and 'rejected', and optionally 'prompt')")
    chosen = as_messages(row["chosen"], "chosen", where)
    rejected = as_messages(row["rejected"], "rejected", where)
    prompt_value = row.get("prompt")

    if len(chosen) > 1 or len(rejected) > 1:
        # Full conversations: the prompt is what comes before the final answer, and both must agree.
        if chosen[:-1] != rejected[:-1]:
            raise DataError(f"{where}: 'chosen' and 'rejected' conversations differ before their last turn")
        prompt = chosen[:-1]
    elif prompt_value is None:
        raise DataError(f"{where}: missing 'prompt', and 'chosen' holds only the answer, so there is no prompt")
    else:
        prompt = as_messages(prompt_value, "prompt", where)

    for key, answer in (("chosen", chosen[-1]), ("rejected", rejected[-1])):
        if answer["role"] != "assistant":
            raise DataError(f"{where}: the last turn of {key!r} has role {answer['role']!r}, expected 'assistant'")
    if not any(turn["content"].strip() for turn in prompt):
        return "empty prompt"
    if not chosen[-1]["content"].strip() or not rejected[-1]["content"].strip():
        return "empty response"
    if chosen[-1]["content"].strip() == rejected[-1]["content"].strip():
        return "chosen identical to rejected"
    return Pair(prompt=prompt, chosen=chosen[-1], rejected=rejected[-1])
