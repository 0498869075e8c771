"""A judge named in a recipe or on the command line: `openai:MODEL`, `local:MODEL` or `reward:MODEL`.

Read here, below the evaluation code that opens the judge, so that a recipe is checked without it.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..errors import RecipeError

OPENAI_URL = "https://api.openai.com/v1"  # an openai: judge's endpoint when no base_url is set
JUDGED_BENCHMARKS = ("alpaca_eval", "arena_hard")  # the benchmarks a judge scores
SPEC_FORMS = "openai:MODEL (an OpenAI-compatible endpoint), local:MODEL (a causal LM run here) or reward:MODEL (a reward model)"


def judge_kind(spec) -> tuple[str, str]:
    """(kind, MODEL) of a judge spec; a RecipeError naming the accepted forms for anything else."""
    kind, _, model = (spec if isinstance(spec, str) else "").partition(":")
    if kind not in ("openai", "local", "reward") or not model.strip():
        raise RecipeError(f"judge {spec!r} is not a judge: write {SPEC_FORMS}")
    return kind, model.strip()


def check_base_url(url, where: str) -> None:
    """An http(s) URL with a host, as a judge's endpoint must be; a RecipeError naming `where` for anything else."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise RecipeError(f"{where} {url!r} is not an endpoint URL; write one like https://api.openai.com/v1 or http://localhost:8000/v1")


def check_openai_only(spec: str, settings: dict) -> None:
    """Refuse the settings only an `openai:` judge takes (its endpoint, its judgments' cap), named by
    their keys in `settings`, when they are set for another judge."""
    kind, _ = judge_kind(spec)
    for key, value in settings.items():
        if value is not None and kind != "openai":
            raise RecipeError(f"{key} is for openai:MODEL judges only, not {spec!r}: remove it")


def check_judge_ready(spec: str, base_url: str | None, benchmarks, url_key: str, max_tokens: int | None = None,
                      max_tokens_key: str = "") -> None:
    """What an `openai:` judge needs before any answer is generated: an endpoint URL, and OPENAI_API_KEY
    when the endpoint is OpenAI's own (judge_openai asks for a key there only); its endpoint and its
    answers' cap (`max_tokens`) are for such a judge only. Nothing else is checked when no judged
    benchmark (alpaca_eval, arena_hard) runs. `url_key` and `max_tokens_key` name the keys or options in errors."""
    kind, _ = judge_kind(spec)
    check_openai_only(spec, {url_key: base_url, max_tokens_key: max_tokens})
    if base_url is not None:
        check_base_url(base_url, url_key)
    if kind != "openai" or not any(name in JUDGED_BENCHMARKS for name in benchmarks):
        return
    if (base_url or OPENAI_URL).rstrip("/") == OPENAI_URL and not os.environ.get("OPENAI_API_KEY"):
        raise RecipeError(f"judge {spec} needs an API key for {OPENAI_URL}: set OPENAI_API_KEY, or set {url_key} "
                          "to an OpenAI-compatible server (checked before any answer is generated)")
