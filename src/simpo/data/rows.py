"""One preference row, in any of the layouts users bring, reduced to prompt messages + two answers.

Accepted layouts (DESIGN.md section 2):
- UltraFeedback / `gemma2-ultrafeedback-armorm`: `prompt` string, `chosen` and `rejected` full
  conversations (the prompt turns, then the answer); the `prompt` is one of their user turns;
- TRL standard: `prompt`, `chosen`, `rejected` strings (the prompt becomes one user turn);
- TRL conversational: `prompt` message list, `chosen` and `rejected` lists of the answer turn;
- no `prompt` column: `chosen` and `rejected` full conversations; the prompt is all turns but the last.

A conversation is an optional first system message, then user and assistant turns alternating from
the user; a prompt ends with a user turn and the answer is the assistant's. Structural faults (a
missing key, a wrong type, an unknown role, turns out of order, a `prompt` that disagrees with the
conversations) raise `DataError` naming the source and row. Rows that are well formed but useless
for training (an empty answer, chosen identical to rejected) are dropped and counted by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError

ROLES = ("system", "user", "assistant")


@dataclass
class Pair:
    prompt: list[dict]
    chosen: dict
    rejected: dict


def as_messages(value, key: str, where: str) -> list[dict]:
    """`value` (a string, or a list of {role, content} with known roles) as messages; a string is one
    user turn for the prompt and one assistant turn for an answer."""
    if isinstance(value, str):
        return [{"role": "assistant" if key != "prompt" else "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: {key!r} must be a string or a non-empty list of messages, got {value!r:.80}")
    for number, turn in enumerate(value, 1):
        if not (isinstance(turn, dict) and isinstance(turn.get("role"), str) and isinstance(turn.get("content"), str)):
            raise DataError(f"{where}: {key!r} has a message that is not {{'role': str, 'content': str}}: {turn!r:.80}")
        if turn["role"] not in ROLES:
            raise DataError(f"{where}: turn {number} of {key!r} has role {turn['role']!r}; the roles are 'system', 'user' and 'assistant'")
    return [{"role": turn["role"], "content": turn["content"]} for turn in value]


def check_order(turns: list[dict], key: str, where: str) -> None:
    """Roles in order: an optional first system message, then user and assistant alternating from the user."""
    first = 1 if turns[0]["role"] == "system" else 0
    for number, turn in enumerate(turns[first:], first + 1):
        due = "user" if (number - first) % 2 else "assistant"
        if turn["role"] != due:
            raise DataError(
                f"{where}: turn {number} of {key!r} is {turn['role']!r} where {due!r} is due; a conversation is an "
                "optional first 'system' message, then 'user' and 'assistant' turns alternating, starting with the user"
            )


def read_prompt(value, where: str) -> list[dict]:
    """A prompt (a string, or messages in order ending with the user's turn) as messages."""
    turns = as_messages(value, "prompt", where)
    check_order(turns, "prompt", where)
    if turns[-1]["role"] != "user":
        raise DataError(f"{where}: the prompt's last turn is {turns[-1]['role']!r}; a prompt ends with the user's turn that the answer replies to")
    return turns


def _check_prompt_agrees(value, turns: list[dict], where: str) -> None:
    """A `prompt` given beside whole conversations must be their prompt: one of its user turns (a
    string, as UltraFeedback has it) or all of its turns (a list)."""
    if isinstance(value, str):
        agrees = value.strip() in {turn["content"].strip() for turn in turns if turn["role"] == "user"}
    else:
        given = as_messages(value, "prompt", where)
        agrees = [(t["role"], t["content"].strip()) for t in given] == [(t["role"], t["content"].strip()) for t in turns]
    if not agrees:
        raise DataError(
            f"{where}: 'prompt' is not the prompt of the 'chosen' conversation (its turns before the answer); beside a "
            "'prompt', 'chosen' and 'rejected' hold either the answer alone or the whole conversation, prompt turns included"
        )


def read_pair(row: dict, where: str) -> Pair | str:
    """The row as a `Pair`, or the reason to drop it; raises `DataError` on a malformed row."""
    for key in ("chosen", "rejected"):
        if row.get(key) is None:
            raise DataError(f"{where}: missing {key!r} (rows need 'chosen' and 'rejected', and optionally 'prompt')")
    answers = {key: as_messages(row[key], key, where) for key in ("chosen", "rejected")}
    for key, turns in answers.items():
        if turns[-1]["role"] != "assistant":
            raise DataError(f"{where}: the last turn of {key!r} has role {turns[-1]['role']!r}; {key!r} ends with the assistant's answer")
    chosen, rejected = answers["chosen"], answers["rejected"]
    prompt_value = row.get("prompt")

    if len(chosen) > 1 or len(rejected) > 1:
        # Whole conversations: the prompt is what comes before the final answer, and both must agree.
        if len(chosen) == 1 or len(rejected) == 1:
            whole, alone = ("chosen", "rejected") if len(chosen) > 1 else ("rejected", "chosen")
            raise DataError(
                f"{where}: {whole!r} is a whole conversation but {alone!r} only the answer; give both the whole "
                "conversation or both the answer alone"
            )
        if prompt_value is not None:
            _check_prompt_agrees(prompt_value, chosen[:-1], where)
        for key, turns in answers.items():
            check_order(turns, key, where)
        if chosen[:-1] != rejected[:-1]:
            raise DataError(f"{where}: 'chosen' and 'rejected' conversations differ before their last turn")
        prompt = chosen[:-1]
    elif prompt_value is None:
        raise DataError(f"{where}: missing 'prompt', and 'chosen' holds only the answer, so there is no prompt")
    else:
        prompt = read_prompt(prompt_value, where)

    if not any(turn["content"].strip() for turn in prompt):
        return "empty prompt"
    if not chosen[-1]["content"].strip() or not rejected[-1]["content"].strip():
        return "empty response"
    if chosen[-1]["content"].strip() == rejected[-1]["content"].strip():
        return "chosen identical to rejected"
    return Pair(prompt=prompt, chosen=chosen[-1], rejected=rejected[-1])
