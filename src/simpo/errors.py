"""The errors a user sees as a one-line message (`simpo: error: ...`) instead of a traceback, and the
option parser of the verbs that take options instead of a recipe, which raises them. `RecipeError`
and `DataError` are bad input (exit status 2, nothing ran); `TrainingError` is a run that stopped on
what it computed (exit status 3).

No heavy imports here, so that pure modules (losses, shards, rows) can raise them.
"""

import argparse
import json
import sys
from pathlib import Path


class RecipeError(ValueError):
    """A recipe or command line that cannot run; the message names the key and says what to do."""


class DataError(ValueError):
    """A dataset row or file that cannot be read; the message names the source, the row and the fix."""


class TrainingError(RuntimeError):
    """A run that cannot go on (a non-finite loss or gradient); the message names the step and rows and what to do."""


_SHAPES = {dict: "a JSON object", list: "a JSON array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def read_json(path, kind: type = dict, error: type = DataError, what: str = ""):
    """The JSON value of the file `path`, which must be a `kind` (dict: an object). A file that cannot
    be read, is not UTF-8 JSON, or holds another shape raises `error` naming the file (and `what` it
    is, e.g. "a trainer state of transformers"), never a traceback."""
    path = Path(path)
    name = f"{path} ({what})" if what else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{name}: not UTF-8 text, so not JSON; the file is damaged: restore or delete it") from None
    except OSError as err:
        raise error(f"{name}: cannot be read ({err.strerror or err})") from None
    try:
        value = json.loads(text)
    except ValueError as err:  # JSONDecodeError, and numbers too large to convert
        where = f" at line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
        raise error(f"{name}: not valid JSON ({reason}{where}); the file is damaged or cut off: restore or delete it") from None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        shown = "null" if value is None else _SHAPES.get(type(value), type(value).__name__)
        raise error(f"{name}: holds {shown}, not {_SHAPES.get(kind, kind.__name__)}; the file is damaged: restore or delete it")
    return value


class OptionParser(argparse.ArgumentParser):
    """argparse, its errors a RecipeError (one line through the CLI) instead of a usage dump and exit.
    An option given twice is refused, as `--nproc` is (argparse would keep the last silently)."""

    def error(self, message: str):
        raise RecipeError(f"{message} ({self.prog} --help lists the options)")

    def parse_known_args(self, args=None, namespace=None):
        self._refuse_repeated(args)
        return super().parse_known_args(args, namespace)

    def _refuse_repeated(self, tokens) -> None:
        """A `RecipeError` for an option of this parser given twice (`--x 1 --x 2`, `--x=1 --x 2`, an
        abbreviation and the whole name); options that collect values (append, count) may repeat."""
        seen: dict = {}
        for token in sys.argv[1:] if tokens is None else tokens:
            if token == "--":
                break
            if not token.startswith("-") or token == "-":
                continue
            found = self._parse_optional(token)
            action = found[0] if isinstance(found, tuple) else None
            if action is None or isinstance(action, (argparse._AppendAction, argparse._CountAction, argparse._HelpAction)):
                continue
            if action in seen:
                flag = action.option_strings[-1] if action.option_strings else token
                spelt = {seen[action].split("=", 1)[0], token.split("=", 1)[0]} - {flag}
                raise RecipeError(f"{flag} is given twice{' (as ' + ', '.join(sorted(spelt)) + ')' if spelt else ''}; give it once")
            seen[action] = token

    @classmethod
    def of(cls, prog: str, positional: str, options, **settings) -> "OptionParser":
        """The parser of `prog`: one positional argument, then each (flag, argparse settings) of `options`."""
        parser = cls(prog=prog, add_help=False, **settings)
        parser.add_argument(positional)
        for flag, option in options:
            parser.add_argument(flag, **option)
        return parser


def option_rows(options) -> list[tuple[str, str, str, str]]:
    """(flag, type, default, help) of each (flag, argparse settings) of `options`, for `simpo VERB --help`."""
    def default(option) -> str:
        return "required" if option.get("required") else "-" if option.get("default") is None else str(option["default"])

    return [(flag, option["type"].__name__, default(option), option["help"]) for flag, option in options]
