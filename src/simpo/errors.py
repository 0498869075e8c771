"""The errors a user sees as a one-line message (`simpo: error: ...`) instead of a traceback, and the
option parser of the verbs that take options instead of a recipe, which raises them. `RecipeError`
and `DataError` are bad input (exit status 2, nothing ran); `TrainingError` is a run that stopped on
what it computed (exit status 3).

No heavy imports here, so that pure modules (losses, shards, rows) can raise them.
"""

import argparse


class RecipeError(ValueError):
    """A recipe or command line that cannot run; the message names the key and says what to do."""


class DataError(ValueError):
    """A dataset row or file that cannot be read; the message names the source, the row and the fix."""


class TrainingError(RuntimeError):
    """A run that cannot go on (a non-finite loss or gradient); the message names the step and rows and what to do."""


class OptionParser(argparse.ArgumentParser):
    """argparse, its errors a RecipeError (one line through the CLI) instead of a usage dump and exit."""

    def error(self, message: str):
        raise RecipeError(f"{message} ({self.prog} --help lists the options)")

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
