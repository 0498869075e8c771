"""Recipe values converted to their key's declared type, as `transformers.HfArgumentParser` does on
the command line: `learning_rate: 1e-6` (which YAML reads as a string) becomes 1e-06, `max_steps:
"100"` becomes 100, `save_strategy: no` (YAML's false) becomes "no", a string `"true"` a boolean.

What does not convert raises a `RecipeError` naming the key, the value and the type expected. Numbers
must be finite: NaN and infinity pass every range check written with `<`, so they stop here.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Any

from ..errors import RecipeError

_TRUE, _FALSE = ("true", "yes", "y", "1", "on"), ("false", "no", "n", "0", "off")
_PLURAL = {int: "whole numbers", float: "finite numbers", str: "strings", bool: "booleans"}


class _Mismatch(Exception):
    pass


def _is_enum(kind) -> bool:
    return isinstance(kind, type) and issubclass(kind, enum.Enum)


def field_types(cls) -> dict[str, Any]:
    """The resolved type of each init field of a dataclass (string annotations included)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def describe(kind) -> str:
    """A type as a user reads it: 'a number', 'a whole number or none', 'one of no, steps, epoch'."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        enums = [arm for arm in args if _is_enum(arm)]  # `IntervalStrategy | str` takes only the enumeration's values
        arms = enums or [arm for arm in args if arm is not type(None)]
        names = [describe(arm) for arm in arms] + (["none"] if type(None) in args else [])
        return " or ".join(dict.fromkeys(names))
    if origin is typing.Literal:
        return " or ".join(str(arg).lower() for arg in args)
    if origin is list:
        return f"a list of {_PLURAL.get(args[0], 'values')}" if args else "a list"
    if origin is dict or kind is dict:
        return f"a mapping of {_PLURAL.get(args[1], 'values')}" if len(args) == 2 and args[1] is not Any else "a mapping"
    if _is_enum(kind):
        return "one of " + ", ".join(str(member.value) for member in kind)
    return {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}.get(kind, getattr(kind, "__name__", str(kind)))


def _scalar(value: Any, kind) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _Mismatch
    if kind is int:
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value.lower() for c in ".e") else int(value)
            except ValueError:
                raise _Mismatch from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
            raise _Mismatch
        return int(value)
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise _Mismatch from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        if not math.isfinite(value):
            raise _Mismatch
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise _Mismatch
        return value
    if _is_enum(kind):
        if value is False and "no" in {member.value for member in kind}:
            return "no"  # YAML 1.1 reads `no` as false
        if isinstance(value, str) and value in {member.value for member in kind}:
            return value
        raise _Mismatch
    return value  # Any, or a class the recipe cannot spell (passed on for its own checks)


def _convert(value: Any, kind) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        enums = [arm for arm in args if _is_enum(arm)]  # as in describe(): an enumeration's values only
        arms = enums or sorted((arm for arm in args if arm is not type(None)), key=lambda arm: arm is str)
        if not enums and type(value) in (str, bool) and type(value) in arms:
            return value  # already one of the arms: `"no"` stays text where the key also takes a boolean
        for arm in arms:
            try:
                return _convert(value, arm)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if origin is list or kind is list:
        if not isinstance(value, list):
            raise _Mismatch
        return [_convert(item, args[0]) for item in value] if args else value
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        if len(args) == 2:
            return {_convert(k, args[0]): _convert(v, args[1]) for k, v in value.items()}
        return value
    if kind is Any:
        return value
    return _scalar(value, kind)


def convert(value: Any, kind, key: str) -> Any:
    """`value` as `kind`; a `RecipeError` naming `key` when it is not one."""
    try:
        return _convert(value, kind)
    except _Mismatch:
        shown = repr(value) if not isinstance(value, float) else str(value)
        raise RecipeError(f"{key} must be {describe(kind)}, got {shown[:80]}") from None
