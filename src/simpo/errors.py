"""The two errors a user sees as a one-line message (`simpo: error: ...`) instead of a traceback.

No heavy imports here, so that pure modules (losses, shards, rows) can raise them.
"""


class RecipeError(ValueError):
    """A recipe or command line that cannot run; the message names the key and says what to do."""


class DataError(ValueError):
    """A dataset row or file that cannot be read; the message names the source, the row and the fix."""
