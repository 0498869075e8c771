"""Chat templates: rendering prompts and conversations, system messages, end-of-turn tokens, and
the control tokens that message text must not hold."""

from __future__ import annotations

import re

from ..errors import DataError, RecipeError

_PROBE = "SIMPO-PROBE-7f3a"  # survives templates that trim or strip content


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def template_shows_system(tokenizer) -> bool:
    """Whether the template renders a system message at all (Gemma-2's raises or drops it)."""
    messages = [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hi"}]
    try:
        return _PROBE in render(tokenizer, messages)
    except Exception:  # jinja raises its own error types for "System role not supported"
        return False


def fold_system(messages: list[dict]) -> list[dict]:
    """Put a leading system message in front of the first user turn, as Gemma's official template does."""
    if not messages or messages[0].get("role") != "system":
        return messages
    rest = messages[1:]
    if not rest or rest[0].get("role") != "user":
        raise ValueError("a system message must be followed by a user message when the template has no system role")
    first = dict(rest[0], content=f"{messages[0]['content'].strip()}\n\n{rest[0]['content']}")
    return [first, *rest[1:]]


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the token the template closes an assistant turn with (`<|im_end|>`, `<end_of_turn>`, ...)."""
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = render(tokenizer, messages)
    except Exception as err:
        raise RecipeError(f"the chat template cannot render a user/assistant exchange: {err}") from None
    after = text.split(_PROBE, 1)[1] if _PROBE in text else ""
    tail = tokenizer(after, add_special_tokens=False)["input_ids"]
    # A template whose turn ends in plain whitespace has no end-of-turn token of its own.
    if tail and tokenizer.decode(tail[:1]).strip() and tail[0] not in ids:
        ids.append(tail[0])
    return ids


def control_tokens(tokenizer) -> re.Pattern:
    """The tokens a chat template steers the model with, as one pattern: the tokenizer's special
    tokens (BOS, EOS, pad, unk and its additional special tokens) and the added special tokens its
    template writes (`<|im_start|>`, `<start_of_turn>`, `<|start_header_id|>`). The tokenizer reads
    such a token in message text as the token itself, so the text could open or end turns of its own."""
    template = str(tokenizer.chat_template or "")
    written = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special and token.content in template}
    tokens = sorted({*tokenizer.all_special_tokens, *written} - {""}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, tokens)) or "(?!)")  # "(?!)": no token, nothing matches


def check_control_tokens(pattern: re.Pattern, messages: list[dict], where: str) -> None:
    """Raise `DataError` naming `where` and the token when a message's text holds a control token."""
    for message in messages:
        found = pattern.search(message["content"])
        if found:
            raise DataError(
                f"{where}: {message['role']!r} text holds {found.group()!r}, a control token of the model's chat "
                "template, which the tokenizer would read as the token itself, not as text; remove it from the data "
                "(is the text already rendered with a chat template?)"
            )
