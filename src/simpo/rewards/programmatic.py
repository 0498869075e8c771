"""Programmatic rewards for verifiable tasks, and the check that every row has what they need.

- `numeric_answer`: 1 when the last number in the response equals the row's reference answer
  (`answer`, or the key given as `answer_key`), else 0.
- `constraints`: the fraction of the row's `constraints` that the response meets, from
  `max_words` (a positive whole number: at most that many words), `lowercase` (a boolean; true: no
  capital letter) and `keywords` (a list of non-empty strings; each must appear, case-insensitively).
  A constraint that is null is not set (a struct column of `datasets` fills the keys a row lacks
  with null).
"""

from __future__ import annotations

import math
import re

from ..errors import DataError

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")

# Each constraint: whether a value is one it can check, and what it must be.
CONSTRAINTS = {
    "max_words": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() and v >= 1,
                  "a positive whole number"),
    "lowercase": (lambda v: isinstance(v, bool), "true or false"),
    "keywords": (lambda v: isinstance(v, list) and all(isinstance(k, str) and k.strip() for k in v),
                 "a list of non-empty strings"),
}


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
    if constraints.get("max_words") is not None:
        checks.append(len(response.split()) <= constraints["max_words"])
    if constraints.get("lowercase"):
        checks.append(response == response.lower())
    for keyword in constraints.get("keywords") or []:
        checks.append(keyword.lower() in response.lower())
    return sum(checks) / len(checks) if checks else 1.0


def _check_constraints(constraints, where: str) -> None:
    given = {name: value for name, value in constraints.items() if value is not None} if isinstance(constraints, dict) else {}
    if not given:
        raise DataError(f"{where}: the constraints reward needs a 'constraints' mapping of one or more of "
                        f"{', '.join(CONSTRAINTS)}, got {constraints!r:.60}; add it to every prompt row or drop this reward")
    for name, value in given.items():
        if name not in CONSTRAINTS:
            raise DataError(f"{where}: unknown constraint {name!r}; the constraints are {', '.join(CONSTRAINTS)}")
        valid, expected = CONSTRAINTS[name]
        if not valid(value):
            raise DataError(f"{where}: constraint {name!r} must be {expected}, got {value!r:.60}")


def check_references(rewards: list[dict], rows: list[dict], label: str) -> None:
    """Fail before any work when a programmatic reward cannot find, or cannot use, what it checks
    against. Rows carry their index in the source as `row` (counted from 0); messages count from 1."""
    for reward in rewards:
        if reward["type"] not in ("numeric_answer", "constraints"):
            continue
        for row in rows:
            where = f"{label}, row {row['row'] + 1}"
            if reward["type"] == "numeric_answer":
                key = reward.get("answer_key", "answer")
                if parse_number(row.get(key)) is None:
                    raise DataError(
                        f"{where}: the numeric_answer reward needs a reference number in {key!r}, got {row.get(key)!r}; "
                        "add it to every prompt row or drop this reward"
                    )
            else:
                _check_constraints(row.get("constraints"), where)
