"""Programmatic rewards for verifiable tasks, and the check that every row has what they need.

- `numeric_answer`: 1 when the last number in the response equals the row's reference answer
  (`answer`, or the key given as `answer_key`), else 0.
- `constraints`: the fraction of the row's `constraints` that the response meets, from
  `max_words` (a count), `lowercase` (true: no capital letter) and `keywords` (each must appear,
  case-insensitively).
"""

from __future__ import annotations

import math
import re

from ..errors import RecipeError

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_number(text) -> float | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    found = _NUMBER.findall(str(text))
    return float(found[-1].replace(",", "")) if found else None


def numeric_answer(response: str, reference) -> float:
    value, expected = parse_number(response), parse_number(reference)
    return float(value is not None and math.isclose(value, expected, rel_tol=0, abs_tol=1e-6))


def constraints_met(response: str, constraints: dict) -> float:
    checks = []
    if "max_words" in constraints:
        checks.append(len(response.split()) <= constraints["max_words"])
    if constraints.get("lowercase"):
        checks.append(response == response.lower())
    for keyword in constraints.get("keywords", []):
        checks.append(keyword.lower() in response.lower())
    return sum(checks) / len(checks) if checks else 1.0


def check_references(rewards: list[dict], rows: list[dict], label: str) -> None:
    """Fail before any work when a programmatic reward cannot find what it checks against."""
    for reward in rewards:
        if reward["type"] == "numeric_answer":
            key = reward.get("answer_key", "answer")
            for row in rows:
                if parse_number(row.get(key)) is None:
                    raise RecipeError(
                        f"{label}, row {row.get('row', '?')}: the numeric_answer reward needs a reference number "
                        f"in {key!r}, got {row.get(key)!r}; add it to every prompt row or drop this reward"
                    )
        elif reward["type"] == "constraints":
            for row in rows:
                if not isinstance(row.get("constraints"), dict):
                    raise RecipeError(f"{label}, row {row.get('row', '?')}: the constraints reward needs a 'constraints' mapping")
