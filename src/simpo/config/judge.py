"""A judge named in a recipe or on the command line: `openai:MODEL`, `local:MODEL` or `reward:MODEL`.

Read here, below the evaluation code that opens the judge, so that a recipe is checked without it.
"""

from __future__ import annotations

from ..errors import RecipeError

SPEC_FORMS = "openai:MODEL (an OpenAI-compatible endpoint), local:MODEL (a causal LM run here) or reward:MODEL (a reward model)"


def judge_kind(spec) -> tuple[str, str]:
    """(kind, MODEL) of a judge spec; a RecipeError naming the accepted forms for anything else."""
    kind, _, model = (spec if isinstance(spec, str) else "").partition(":")
    if kind not in ("openai", "local", "reward") or not model.strip():
        raise RecipeError(f"judge {spec!r} is not a judge: write {SPEC_FORMS}")
    return kind, model.strip()
