"""Chat templates: rendering prompts and conversations, system messages, end-of-turn tokens."""

from __future__ import annotations

from ..errors import RecipeError

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
