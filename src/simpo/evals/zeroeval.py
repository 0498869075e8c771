"""ZeroEval's zero-shot protocol for GSM and MMLU, as the SimPO authors ran it for the Gemma table.

The model is asked to reason first and to answer in a JSON object `{"reasoning": ..., "answer": ...}`
and decodes greedily. Every rule below follows ZeroEval's code (Lin et al., github.com/WildEval/ZeroEval,
read at its newest commit, 8c1485e); the file each comes from is named.

Prompts (`src/_TEMPLATES.py`, `src/templates/OEQA.py`, `src/templates/MCQA.py`):
- GSM fills the `OEQA` template, MMLU the `MCQA` one, by text replacement: `{question}` first, then
  (multiple choice) `{choices}` with one line `- (A) choice` per choice, each ending in a newline.
- `--zeroeval-dir` reads both templates from a ZeroEval checkout at run time (their module-level
  string constants, parsed with `ast`, never executed); the protocol then says "ZeroEval's
  templates". Without it the prompts are simpo's own wording of the same layout (question, lettered
  choices, the two-field JSON format with an example answer field), and the protocol says so.

Reading an output (`src/evaluation/eval_utils.py`: `extract_first_complete_json`, `extract_values_from_json`):
- The first complete top-level `{...}` span, by brace matching (a `}` with no open brace is
  skipped), is parsed as JSON with its newlines removed; if it does not parse, there is no object
  (a later one is not tried). For both benchmarks.
- When there is no object, or it has no `answer` key, the fields are read from the whole output
  with regular expressions: a quoted value (`"key": "..."` without inner quotes), then a quoted
  value running over quotes and lines, then an unquoted value (`"key": 42`), then an unquoted key
  (`key: C`).
- ZeroEval's `model_specific_extraction` (a `\\boxed{}` answer, for model names holding
  "Llama-3.1" only) is not applied: it never fires for the models simpo evaluates by name.

GSM (`src/evaluation/math_eval.py`):
- No answer only when no `answer` key is found; a `null` or empty answer is the text "None" or ""
  (never correct) and counts as answered.
- The reference is the dataset's `answer` with `#` removed, stripped. Both answers lose `$`, are
  stripped, lose `,`; one that holds `/` is replaced by its value as a float when it is arithmetic
  (ZeroEval calls Python's `eval`; simpo computes numbers, `+ - * /`, signs and parentheses from
  the `ast` parse tree, never executing the text: `3/4` -> `0.75`, `(1+2)/4` -> `0.75`, anything
  else, or a division by zero, leaves the answer as it was).
- Correct when both have a first number (`-?\\d+(\\.\\d+)?`) and the two are equal as floats.

Multiple choice (`src/evaluation/mcqa_eval.py`):
- No answer when no `answer` key is found or its value is `null` or "".
- The right letter is that of the first choice equal to the dataset's `correct_answer`.
- Correct when the answer equals the letter `X` or contains `X)` (`"B"`, `"(B)"`, `"B) Paris"`;
  not `"The answer is B"`). A list or object answer is tested with `in` as ZeroEval does; a number
  is wrong (ZeroEval fails on it).

Summary (both scripts): accuracy = correct / all items (no answer counts as wrong); no answer =
the share without one; Length = mean `len(reasoning)` over the items with an answer (a missing
`reasoning` is ""; one that is not a string is measured as its JSON text, where ZeroEval takes
`len()` of the value itself).
"""

from __future__ import annotations

import ast
import json
import operator
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecipeError

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NUMBER = re.compile(r"-?\d+(\.\d+)?")

OFFICIAL = "ZeroEval's templates"  # the protocol's `prompt` element: evals.protocol.CARD's value
OWN = "simpo's wording of ZeroEval's layout"

_JSON_FORMAT = '```json\n{\n    "reasoning": "___",\n    "answer": "___"\n}\n```'
_OWN_OPEN = (
    "## Question:\n\n{question}\n\n## Instruction\n\n"
    "Think the problem through step by step first, then give the final answer. Reply with a JSON object in this "
    'format, putting only the final answer in the `answer` field, e.g. `"answer": "42"`.\n\n' + _JSON_FORMAT
)
_OWN_CHOICE = (
    "## Question:\n\n{question}\n\n## Choices:\n\n{choices}\n## Instruction\n\n"
    "Think the question through step by step first, then pick the correct choice. Reply with a JSON object in this "
    'format, putting only the letter of your choice in the `answer` field, e.g. `"answer": "C"`.\n\n' + _JSON_FORMAT
)

# The template files of a ZeroEval checkout: (file, constant, the placeholders it must hold).
TEMPLATE_FILES = {"open": ("src/templates/OEQA.py", "OEQA", ("{question}",)),
                  "choice": ("src/templates/MCQA.py", "MCQA", ("{question}", "{choices}"))}


@dataclass(frozen=True)
class Wording:
    """The two prompt templates and where they come from (the protocol's `prompt` element)."""

    open: str
    choice: str
    source: str


SIMPO_WORDING = Wording(_OWN_OPEN, _OWN_CHOICE, OWN)


def wording(zeroeval_dir: str | None) -> Wording:
    """ZeroEval's templates read from a checkout, or simpo's own wording without one."""
    return SIMPO_WORDING if zeroeval_dir is None else read_templates(zeroeval_dir)


def read_templates(folder: str | Path) -> Wording:
    """The OEQA and MCQA templates of a ZeroEval checkout, read with `ast` (nothing of it executed);
    a missing or unexpected file raises a one-line RecipeError naming it."""
    from .judge_prompts import literal_constants

    root = Path(folder)
    if not root.is_dir():
        raise RecipeError(f"--zeroeval-dir {folder}: no such folder; give a ZeroEval checkout (git clone https://github.com/WildEval/ZeroEval)")
    found = {}
    for kind, (relative, name, placeholders) in TEMPLATE_FILES.items():
        path = root / relative
        if not path.is_file():
            raise RecipeError(f"--zeroeval-dir {folder}: {path} is missing; expected a ZeroEval checkout with the constant {name} in {relative}")
        try:
            constants = literal_constants(path.read_text(encoding="utf-8"), str(path))
        except (SyntaxError, ValueError, UnicodeDecodeError) as err:
            raise RecipeError(f"{path} is not a Python file that parses ({type(err).__name__}); expected ZeroEval's {name} template") from None
        template = constants.get(name)
        if not isinstance(template, str):
            raise RecipeError(f"{path} has no string constant {name}; expected ZeroEval's {name} template")
        missing = [placeholder for placeholder in placeholders if placeholder not in template]
        if missing:
            raise RecipeError(f"{path}: {name} lacks {' and '.join(missing)}; expected ZeroEval's template with {' and '.join(placeholders)}")
        found[kind] = template
    return Wording(found["open"], found["choice"], OFFICIAL)


def choice_list(choices: list[str]) -> str:
    """The choices as ZeroEval lists them: `- (A) first\\n- (B) second\\n`."""
    return "".join(f"- ({LETTERS[i]}) {choice}\n" for i, choice in enumerate(choices))


def open_question_prompt(question: str, words: Wording = SIMPO_WORDING) -> str:
    """The OEQA template with the question in it."""
    return words.open.replace("{question}", question)


def multiple_choice_prompt(question: str, choices: list[str], words: Wording = SIMPO_WORDING) -> str:
    """The MCQA template with the question, then the lettered choices, in it."""
    return words.choice.replace("{question}", question).replace("{choices}", choice_list(choices))


def first_json_object(text: str) -> dict | None:
    """The first complete top-level `{...}` of `text` parsed (newlines removed), or None when there is
    none or it does not parse."""
    depth, start = 0, None
    for i, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                try:
                    value = json.loads(text[start : i + 1].replace("\n", ""))
                except json.JSONDecodeError:
                    return None
                return value if isinstance(value, dict) else None
    return None


def fields_by_pattern(text: str, keys=("reasoning", "answer")) -> dict:
    """The fields of a JSON-like text by the patterns ZeroEval falls back on (values are strings)."""
    found = {}
    for key in keys:
        for pattern, flags in ((rf'"{key}"\s*:\s*"([^"]*?)"', 0), (rf'"{key}"\s*:\s*"(.*?)"', re.DOTALL),
                               (rf'"{key}"\s*:\s*([^,\s]*)', 0), (rf'{key}\s*:\s*([^,\s]*)', 0)):
            match = re.search(pattern, text, flags)
            if match:
                found[key] = match.group(1)
                break
    return found


def read_fields(output: str) -> dict:
    """The fields of an output: its first JSON object when that has an `answer`, else by pattern."""
    prediction = first_json_object(output)
    if prediction is None or "answer" not in prediction:
        prediction = fields_by_pattern(output)
    return prediction


def _reasoning(fields: dict) -> str:
    reasoning = fields.get("reasoning", "")
    if reasoning is None:
        return ""
    return reasoning if isinstance(reasoning, str) else json.dumps(reasoning)


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def arithmetic(text: str) -> int | float:
    """The value of `text` when it is arithmetic on numbers (`+ - * /`, signs, parentheses); anything
    else raises ValueError. The text is parsed with `ast` and only those nodes are computed, so
    nothing in it is executed."""
    return _value(ast.parse(text.lstrip(" \t"), mode="eval").body)


def _value(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    raise ValueError(f"not arithmetic: {type(node).__name__}")


def sanitize_number(answer: str) -> str:
    """math_eval's sanitizing: `$` removed, stripped, `,` removed; with a `/`, the value as a float
    when the answer is arithmetic, else the answer unchanged."""
    answer = answer.replace("$", "").strip().replace(",", "")
    if "/" in answer:
        try:
            answer = str(float(arithmetic(answer)))
        except (SyntaxError, ValueError, ArithmeticError, RecursionError, MemoryError):
            pass
    return answer


def numbers_match(answer: str, reference: str) -> bool:
    """Whether the first numbers of the sanitized answer and reference are equal as floats."""
    mine, theirs = _NUMBER.search(sanitize_number(answer)), _NUMBER.search(sanitize_number(reference))
    return bool(mine and theirs) and float(mine.group()) == float(theirs.group())


_NO_ANSWER = {"answer": None, "reasoning": None, "correct": False}


def score_open(output: str, reference: str) -> dict:
    """One GSM output scored: {"answer", "reasoning", "correct"} (answer None: no answer)."""
    fields = read_fields(output)
    if "answer" not in fields:
        return dict(_NO_ANSWER)
    answer = str(fields["answer"])
    return {"answer": answer, "reasoning": _reasoning(fields), "correct": numbers_match(answer, reference)}


def choice_matches(answer, letter: str) -> bool:
    """mcqa_eval's test: the answer is the letter, or holds `letter)`."""
    if answer == letter:
        return True
    return isinstance(answer, (str, list, dict)) and f"{letter})" in answer


def score_choice(output: str, letter: str) -> dict:
    """One multiple-choice output scored against the right letter (answer None: no answer)."""
    fields = read_fields(output)
    answer = fields.get("answer")
    if answer is None or answer == "":
        return dict(_NO_ANSWER)
    return {"answer": answer, "reasoning": _reasoning(fields), "correct": choice_matches(answer, letter)}


def summarize(scored: list[dict]) -> dict:
    """Accuracy in percent over every item, the share without an answer, the mean reasoning length
    over the items with an answer (None when none has one)."""
    answered = [row for row in scored if row["answer"] is not None]
    return {
        "accuracy": 100 * sum(row["correct"] for row in scored) / len(scored),
        "no_answer": 100 * (len(scored) - len(answered)) / len(scored),
        "length": sum(len(row["reasoning"]) for row in answered) / len(answered) if answered else None,
    }
