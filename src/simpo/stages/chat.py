"""`simpo chat MODEL`: a conversation with a model in the terminal, its answers streamed as they are made.

The conversation is rendered with the model's chat template (a system message folded into the first
user turn where the template has no system role) and every turn sees the whole history. Decoding
stops at the model's stop tokens (`data.chat.stop_token_ids`: EOS and the template's end-of-turn
token), the same ids the model card shows. Greedy by default; `--temperature` above 0 samples.

`--prompt` answers one message and exits. Otherwise each line read from stdin is a user turn; an
empty line, `/exit` or the end of input ends the session, and `/reset` forgets the history. Answers
go to stdout, everything else (the greeting, notes on history cut for length) to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from ..errors import DataError, OptionParser, RecipeError, option_rows

# (flag, argparse settings): the parser and `simpo chat --help` are both made from these.
OPTIONS = (
    ("--prompt", {"type": str, "default": None, "help": "Answer this one message and exit (no interactive loop)"}),
    ("--system", {"type": str, "default": None, "help": "A system message at the start of the conversation"}),
    ("--max-new-tokens", {"type": int, "default": 512, "help": "At most this many tokens per answer"}),
    ("--temperature", {"type": float, "default": 0.0, "help": "0: greedy decoding; above 0: sampling at this temperature"}),
    ("--top-p", {"type": float, "default": 1.0, "help": "Nucleus sampling's top_p, when sampling"}),
    ("--dtype", {"type": str, "default": "auto", "choices": ["auto", "float32", "bfloat16"],
                 "help": "Weights dtype; auto: bf16 where the machine computes it natively, else fp32"}),
)
OPTION_ROWS = option_rows(OPTIONS)


def parse_options(tokens: list[str]) -> argparse.Namespace:
    options = OptionParser.of("simpo chat", "model", OPTIONS).parse_args(tokens)
    for flag, text in (("--prompt", options.prompt), ("--system", options.system)):
        try:
            (text or "").encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, which Python keeps as lone surrogates
            raise RecipeError(f"{flag} is not UTF-8 text; give the message in UTF-8") from None
    if options.max_new_tokens < 1:
        raise RecipeError(f"--max-new-tokens must be at least 1, got {options.max_new_tokens}")
    if options.temperature < 0:
        raise RecipeError(f"--temperature must be 0 (greedy) or more, got {options.temperature}")
    if not 0 < options.top_p <= 1:
        raise RecipeError(f"--top-p must be in (0, 1], got {options.top_p}")
    return options


def _streamer(tokenizer, stop_ids: list[int], out: TextIO):
    """transformers' `TextStreamer`, writing the answer's text to `out`: special tokens and the stop
    token left out, as the answer kept in the history leaves them out."""
    import torch
    from transformers import TextStreamer

    stops = torch.tensor(stop_ids)

    class Stream(TextStreamer):
        def put(self, value) -> None:
            super().put(value[~torch.isin(value, stops)])

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            out.write(text + ("\n" if stream_end else ""))
            out.flush()

    return Stream(tokenizer, skip_prompt=True, skip_special_tokens=True)


class ChatSession:
    """A model, its tokenizer and stop tokens, and the conversation so far."""

    def __init__(self, model, tokenizer, system: str | None = None, max_new_tokens: int = 512,
                 temperature: float = 0.0, top_p: float = 1.0):
        from ..data.chat import stop_token_ids, template_shows_system

        self.model, self.tokenizer = model.eval(), tokenizer
        self.stop_ids = stop_token_ids(tokenizer)
        self.fold_system = not template_shows_system(tokenizer)
        self.system = system
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.context = getattr(model.config, "max_position_embeddings", None)
        self.history: list[dict] = []  # user and assistant turns, alternating

    def reset(self) -> None:
        self.history = []

    def prompt_ids(self, turns: list[dict]) -> list[int]:
        from ..data.chat import fold_system, render

        messages = ([{"role": "system", "content": self.system}] if self.system else []) + turns
        if self.fold_system:
            messages = fold_system(messages)
        text = render(self.tokenizer, messages, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _fitting_prompt(self, turns: list[dict], err: TextIO) -> tuple[list[dict], list[int]]:
        """The prompt ids of `turns`, the oldest exchanges dropped while the prompt and an answer
        would not fit the model's positions."""
        ids = self.prompt_ids(turns)
        while self.context and len(ids) + self.max_new_tokens > self.context and len(turns) > 1:
            turns = turns[2:]
            print(f"(the conversation is longer than the model's {self.context} positions: its oldest exchange is left out)", file=err)
            ids = self.prompt_ids(turns)
        if self.context and len(ids) + self.max_new_tokens > self.context:
            raise DataError(f"the message is {len(ids)} tokens: with --max-new-tokens {self.max_new_tokens} "
                            f"it does not fit the model's {self.context} positions")
        return turns, ids

    def reply(self, text: str, out: TextIO, err: TextIO | None = None) -> str:
        """Answer `text` after the history, streaming the answer to `out` (notes to `err`, else
        stderr); the answer joins the history."""
        import torch
        from transformers import GenerationConfig

        turns, ids = self._fitting_prompt([*self.history, {"role": "user", "content": text}], err or sys.stderr)
        if self.temperature > 0:  # nucleus sampling alone, as `simpo generate` samples: no top-k
            sampling = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": 0}
        else:
            sampling = {"do_sample": False}
        settings = GenerationConfig(max_new_tokens=self.max_new_tokens, eos_token_id=self.stop_ids,
                                    pad_token_id=self.tokenizer.pad_token_id, **sampling)
        input_ids = torch.tensor([ids], device=self.model.device)
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=settings,
                                         streamer=_streamer(self.tokenizer, self.stop_ids, out))
        new = output[0, len(ids):].tolist()
        if new and new[-1] in self.stop_ids:
            new = new[:-1]
        answer = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        self.history = [*turns, {"role": "assistant", "content": answer}]
        return answer


def _read_line(lines: TextIO, number: int) -> str:
    """Line `number` of `lines`, decoded as UTF-8 one line at a time (from the bytes under a text
    stream, as stdin has them), so that a line that is not UTF-8 is named, never a traceback."""
    raw = lines.buffer.readline() if hasattr(lines, "buffer") else lines.readline()
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"standard input, line {number}: byte {raw[error.start]:#04x} is not UTF-8; type or pipe UTF-8 text") from None


def converse(session: ChatSession, lines: TextIO, out: TextIO, err: TextIO) -> None:
    """Read user turns from `lines` until an empty line, `/exit` or the end; `/reset` starts over."""
    print("chat: an empty line or /exit ends, /reset forgets the conversation", file=err)
    number = 0
    while True:
        if lines.isatty():
            err.write("> ")
            err.flush()
        number += 1
        line = _read_line(lines, number)
        text = line.strip()
        if not line or not text or text == "/exit":
            return
        if text == "/reset":
            session.reset()
            print("(conversation forgotten)", file=err)
            continue
        try:
            session.reply(text, out, err)
        except DataError as error:  # one message too long: say so and keep the session
            print(f"simpo: error: {error}", file=err)


def run_chat(tokens: list[str], lines: TextIO | None = None, out: TextIO | None = None, err: TextIO | None = None) -> None:
    """`simpo chat` with its command-line tokens; stdin, stdout and stderr unless given."""
    import torch

    from ..config.recipe import ModelConfig
    from ..models.loading import load_model, load_tokenizer
    from ..models.precision import resolve_dtype

    lines, out, err = lines or sys.stdin, out or sys.stdout, err or sys.stderr
    options = parse_options(tokens)
    if options.model.startswith(("/", ".")) and not Path(options.model).is_dir():
        raise RecipeError(f"model folder {options.model} does not exist")
    config = ModelConfig(model_name_or_path=options.model)
    try:
        tokenizer = load_tokenizer(config)
    except OSError as error:  # neither a folder nor a reachable hub model
        raise RecipeError(f"cannot load the model {options.model}: {error}".splitlines()[0]) from None
    model = load_model(config, resolve_dtype(options.dtype, "--dtype"))
    if torch.cuda.is_available():
        model = model.to("cuda")
    session = ChatSession(model, tokenizer, options.system, options.max_new_tokens, options.temperature, options.top_p)
    if options.prompt is not None:
        session.reply(options.prompt, out, err)
    else:
        converse(session, lines, out, err)
