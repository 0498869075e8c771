"""Token ids of a preference pair: the rendered prompt, then each response, then truncation, under
one of two rules (`tokenization`): `official`, the official trainer's sequences (`data.official`),
or `template` (the default), described here.

The response tokens are everything the chat template renders after the prompt (with
`add_generation_prompt=True`) for the whole conversation: the answer and the template's own
end-of-turn. Message text holding a control token of the template (`<|im_end|>`, `<start_of_turn>`)
is an error, since it would be tokenized as that token. Whole texts are tokenized once, without extra special tokens (templates render their
own BOS), and the prompt is the longest common token prefix of the prompt and both conversations,
so `prompt_ids + response_ids` is always the tokenization of the whole conversation, also when a
token merges across the prompt/response boundary.

A pair is laid out as `prompt_ids` (shared by both sequences) and per side `chosen_ids` /
`rejected_ids`, whose first `chosen_unscored` / `rejected_unscored` tokens are prompt (always 0
under `template`; under `official` the rest of a side's own prompt where the two differ).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError
from .chat import check_control_tokens, control_tokens, fold_system, render, template_shows_system
from .official import official_ids, use_official_template
from .rows import Pair

TOKENIZATIONS = ("template", "official")


def common_prefix(*sequences: list[int]) -> int:
    n = min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != sequences[0][i] for s in sequences[1:]):
            return i
    return n


@dataclass
class PairEncoder:
    tokenizer: object
    max_length: int
    max_prompt_length: int
    truncation_mode: str = "keep_end"
    tokenization: str = "template"

    @classmethod
    def for_recipe(cls, tokenizer, args, model_name: str) -> PairEncoder:
        """The encoder of a training recipe's settings (`args`: its `SimPOConfig`). Under `official`
        the tokenizer first gets the template the official trainer gives this model, if any."""
        if args.tokenization == "official":
            use_official_template(tokenizer, model_name)
        return cls(tokenizer, args.max_length, args.max_prompt_length, args.truncation_mode, args.tokenization)

    def __post_init__(self):
        self.fold_system = not template_shows_system(self.tokenizer)
        self.control_tokens = control_tokens(self.tokenizer)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, pair: Pair, where: str) -> dict:
        check_control_tokens(self.control_tokens, [*pair.prompt, pair.chosen, pair.rejected], where)
        if self.tokenization == "official":
            sides, prompt_cut, response_cut = official_ids(self.tokenizer, pair, self.max_length, self.max_prompt_length,
                                                           self.truncation_mode, where)
            return _layout(*sides, prompt_cut, response_cut)
        prompt_messages = pair.prompt
        if self.fold_system:
            try:
                prompt_messages = fold_system(prompt_messages)
            except ValueError as err:
                raise DataError(f"{where}: {err}") from None
        try:
            prompt_text = render(self.tokenizer, prompt_messages, add_generation_prompt=True)
            texts = [render(self.tokenizer, prompt_messages + [answer]) for answer in (pair.chosen, pair.rejected)]
        except Exception as err:  # jinja's errors carry the template's own message ("roles must alternate")
            raise DataError(f"{where}: the chat template cannot render this conversation: {err}") from None
        for text in texts:
            if not text.startswith(prompt_text):
                raise DataError(
                    f"{where}: the chat template renders the prompt differently inside the whole conversation, "
                    "so the response tokens cannot be separated; fix the template (`chat_template:` in the recipe)"
                )
        prompt_ids, chosen_ids, rejected_ids = self._ids(prompt_text), *map(self._ids, texts)
        bos = self.tokenizer.bos_token_id
        if bos is not None and prompt_ids[:2] == [bos, bos]:
            raise DataError(f"{where}: the rendered prompt starts with two BOS tokens; the template adds its own")
        cut = common_prefix(prompt_ids, chosen_ids, rejected_ids)
        if cut in (len(chosen_ids), len(rejected_ids)):
            raise DataError(f"{where}: a response renders to no tokens after the prompt")
        return self.truncate(prompt_ids[:cut], chosen_ids[cut:], rejected_ids[cut:])

    def truncate(self, prompt: list[int], chosen: list[int], rejected: list[int]) -> dict:
        """Official order: shorten the prompt first (to `max_prompt_length`), then the responses."""
        prompt_cut = response_cut = False
        if len(prompt) + max(len(chosen), len(rejected)) > self.max_length:
            if len(prompt) > self.max_prompt_length:
                prompt_cut = True
                if self.truncation_mode == "keep_start":
                    prompt = prompt[: self.max_prompt_length]
                else:
                    # Keep the end of the prompt, but not at the price of the BOS token it starts with.
                    bos = self.tokenizer.bos_token_id
                    keep_bos = bos is not None and prompt[0] == bos
                    tail = prompt[len(prompt) - self.max_prompt_length + keep_bos :]
                    prompt = [bos] + tail if keep_bos else tail
            room = self.max_length - len(prompt)  # >= 1, since max_prompt_length < max_length
            if max(len(chosen), len(rejected)) > room:
                response_cut = True
                chosen, rejected = chosen[:room], rejected[:room]
        return _layout((prompt, chosen), (prompt, rejected), prompt_cut, response_cut)


def _layout(chosen: tuple[list[int], list[int]], rejected: tuple[list[int], list[int]], prompt_cut: bool, response_cut: bool) -> dict:
    """A pair's features from each side's (prompt ids, scored ids): the prompts' common prefix, then
    per side the rest of its prompt (unscored) and its scored tokens."""
    common = common_prefix(chosen[0], rejected[0])
    return {
        "prompt_ids": chosen[0][:common],
        "chosen_ids": chosen[0][common:] + chosen[1],
        "rejected_ids": rejected[0][common:] + rejected[1],
        "chosen_unscored": len(chosen[0]) - common,
        "rejected_unscored": len(rejected[0]) - common,
        "prompt_truncated": prompt_cut,
        "response_truncated": response_cut,
        "length": max(len(prompt) + len(ids) for prompt, ids in (chosen, rejected)),  # for `group_by_length`
    }
