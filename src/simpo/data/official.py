"""`tokenization: official`: the token sequences of the official SimPO trainer (princeton-nlp/SimPO,
`scripts/run_simpo.py` and `scripts/simpo_trainer.py`), which the authors' models were trained on.

Text, as the official `apply_chat_template(task="simpo")` builds it:
- an empty system message goes first in the prompt when the template mentions a system role
  (`auto_insert_empty_system_msg`: "system" or ChatML's `<|im_start|>` in the template), unless the
  prompt already starts with one;
- the prompt text is the template of the prompt messages *without* a generation prompt;
- each answer's text is the template of the answer message alone, its leading BOS text removed;
- a model whose name contains "mistral" is rendered with the official MISTRAL_CHAT_TEMPLATE.

Tokens, as the official `tokenize_row` does: the answer is what the tokens of prompt+answer hold
after the prompt's tokens (one token earlier when the last prompt token merged with the answer, that
token then counted as the answer's); BOS goes before a prompt that does not start with it; EOS after
an answer that does not end with it. When prompt + the longer answer exceed `max_length`, each
side's prompt is cut to `max_prompt_length` (`keep_end`: its last tokens, BOS included in the cut),
and if that is still too long both answers are cut to `max_length - max_prompt_length`.

Chosen and rejected keep their own prompt tokens: they differ where a merge happened, and after a
`keep_end` cut of prompts whose lengths differed.
"""

from __future__ import annotations

from ..errors import DataError
from .chat import render
from .rows import Pair

# The template the official trainer forces on Mistral models (run_simpo.py): a system message joins
# the first user turn, each user turn is "[INST] ... [/INST]", each answer " ... </s>".
MISTRAL_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'].strip() + '\n\n' %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = '' %}{% endif %}"
    "{% for message in loop_messages %}{% if loop.index0 == 0 %}{% set content = system_message + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)


def use_official_template(tokenizer, model_name: str) -> None:
    """Give the tokenizer the template the official trainer substitutes for this model, if any."""
    if "mistral" in model_name.lower():
        tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE


def with_empty_system(messages: list[dict], template: str) -> list[dict]:
    if messages[0]["role"] == "system" or ("system" not in template and "<|im_start|>" not in template):
        return messages
    return [{"role": "system", "content": ""}, *messages]


def official_texts(tokenizer, pair: Pair) -> tuple[str, str, str]:
    """The prompt text and the two answer texts of the official trainer."""
    prompt = with_empty_system(pair.prompt, str(tokenizer.chat_template))
    bos = tokenizer.bos_token or ""

    def answer(message: dict) -> str:
        text = render(tokenizer, [message])
        return text[len(bos):] if bos and text.startswith(bos) else text

    return render(tokenizer, prompt), answer(pair.chosen), answer(pair.rejected)


def _answer_ids(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) from the tokens of prompt+answer, the official way."""
    whole = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    alone = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    start = len(alone) - (alone != whole[: len(alone)])  # a merged last prompt token belongs to the answer
    return whole[:start], whole[start:]


def official_ids(tokenizer, pair: Pair, max_length: int, max_prompt_length: int, truncation_mode: str,
                 where: str) -> tuple[list[tuple[list[int], list[int]]], bool, bool]:
    """[(prompt ids, answer ids) of chosen, of rejected] as the official trainer builds and truncates
    them, whether a prompt was cut, whether an answer was."""
    try:
        prompt, *answers = official_texts(tokenizer, pair)
    except Exception as err:  # jinja's own errors
        raise DataError(f"{where}: the chat template cannot render this conversation: {err}") from None
    sides = [_answer_ids(tokenizer, prompt, answer) for answer in answers]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is not None:
        sides = [(ids if ids[:1] == [bos] else [bos, *ids], answer) for ids, answer in sides]
    if eos is not None:
        sides = [(ids, answer if answer[-1:] == [eos] else [*answer, eos]) for ids, answer in sides]
    longer = max(len(answer) for _, answer in sides)
    prompt_cut = response_cut = False
    cut = []
    for ids, answer in sides:
        if len(ids) + longer > max_length:
            prompt_cut = prompt_cut or len(ids) > max_prompt_length
            ids = ids[:max_prompt_length] if truncation_mode == "keep_start" else ids[-max_prompt_length:]
        if len(ids) + longer > max_length:
            response_cut = response_cut or len(answer) > max_length - max_prompt_length
            answer = answer[: max_length - max_prompt_length]
        cut.append((ids, answer))
    if not all(answer for _, answer in cut):
        raise DataError(f"{where}: an answer renders to no tokens")
    return cut, prompt_cut, response_cut
