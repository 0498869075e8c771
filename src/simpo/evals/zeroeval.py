"""ZeroEval's zero-shot protocol for GSM and MMLU, as the SimPO authors ran it for the Gemma table.

The model is asked to reason first and to answer in a JSON object `{"reasoning": ..., "answer": ...}`
(ZeroEval's OEQA template for open questions, MCQA for multiple choice), decoded greedily. Scoring
follows ZeroEval's evaluation scripts (Lin et al., github.com/WildEval/ZeroEval):

- The prediction is the first complete JSON object of the output for GSM and the last one for
  multiple choice (brace matching; newlines removed before parsing; an object that does not parse
  counts as none). Without one holding `answer`, the fields are read with regular expressions:
  a quoted value, then a value that runs over quotes, then an unquoted value (`"answer": 42` or
  `answer: C`).
- GSM: `$` and `,` are removed from both answers, an `a/b` fraction becomes its decimal value, and
  the first number of each (`-?\\d+(\\.\\d+)?`) is compared as floats.
- Multiple choice: the answer must be exactly the letter of the right choice.
- Accuracy counts an output without an answer as wrong; the Length column is the mean number of
  characters of the `reasoning` field over the outputs that have an answer.

The instruction wording is ours; its structure (question, choices, the two-field JSON format with
an example of the answer field) is ZeroEval's.
"""

from __future__ import annotations

import json
import re

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_JSON_FORMAT = '```json\n{\n    "reasoning": "___",\n    "answer": "___"\n}\n```'
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_FRACTION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)\s*$")


def open_question_prompt(question: str) -> str:
    """ZeroEval's OEQA layout: the question, then how to answer."""
    return (
        f"## Question:\n\n{question}\n\n## Instruction\n\n"
        "Think the problem through step by step first, then give the final answer. Reply with a JSON object in this "
        'format, putting only the final answer in the `answer` field, e.g. `"answer": "42"`.\n\n' + _JSON_FORMAT
    )


def multiple_choice_prompt(question: str, choices: list[str]) -> str:
    """ZeroEval's MCQA layout: the question, the lettered choices, then how to answer."""
    listed = "\n".join(f"- ({LETTERS[i]}) {choice}" for i, choice in enumerate(choices))
    return (
        f"## Question:\n\n{question}\n\n## Choices:\n\n{listed}\n\n## Instruction\n\n"
        "Think the question through step by step first, then pick the correct choice. Reply with a JSON object in this "
        'format, putting only the letter of your choice in the `answer` field, e.g. `"answer": "C"`.\n\n' + _JSON_FORMAT
    )


def _complete_objects(text: str):
    """The text of each top-level `{...}` span, by brace matching, in order."""
    depth, start = 0, None
    for i, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                yield text[start : i + 1]


def _parse(span: str | None) -> dict | None:
    if span is None:
        return None
    try:
        value = json.loads(span.replace("\n", ""))
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _fields_by_pattern(text: str, keys=("reasoning", "answer")) -> dict:
    """The fields of a JSON-like text that does not parse, by the patterns ZeroEval falls back on."""
    found = {}
    for key in keys:
        for pattern, flags in ((rf'"{key}"\s*:\s*"([^"]*?)"', 0), (rf'"{key}"\s*:\s*"(.*?)"', re.DOTALL),
                               (rf'"{key}"\s*:\s*([^,\s]*)', 0), (rf'{key}\s*:\s*([^,\s]*)', 0)):
            match = re.search(pattern, text, flags)
            if match:
                found[key] = match.group(1)
                break
    return found


def extract_prediction(output: str, last: bool = False) -> dict | None:
    """{"reasoning", "answer"} read from a model's output (the first complete JSON object, or the last
    with `last`, else the fields by pattern); None when no answer can be read."""
    spans = list(_complete_objects(output))
    prediction = _parse(spans[-1] if last else spans[0]) if spans else None
    if prediction is None or "answer" not in prediction:
        prediction = _fields_by_pattern(output)
    if "answer" not in prediction:
        return None
    return {"reasoning": str(prediction.get("reasoning", "")), "answer": str(prediction["answer"])}


def sanitize_number(answer: str) -> str:
    """An answer without `$` and `,`, an `a/b` fraction as its decimal value."""
    answer = answer.replace("$", "").strip().replace(",", "")
    fraction = _FRACTION.match(answer)
    if fraction and float(fraction.group(2)) != 0:
        answer = str(float(fraction.group(1)) / float(fraction.group(2)))
    return answer


def numbers_match(answer: str, reference: str) -> bool:
    """Whether the first numbers of the sanitized answer and reference are equal."""
    mine, theirs = _NUMBER.search(sanitize_number(answer)), _NUMBER.search(sanitize_number(reference))
    return bool(mine and theirs) and float(mine.group()) == float(theirs.group())


def score_open(output: str, reference: str) -> dict:
    """One GSM output scored: {"answer", "reasoning", "correct"} (answer None: none found)."""
    prediction = extract_prediction(output)
    if prediction is None:
        return {"answer": None, "reasoning": None, "correct": False}
    return {**prediction, "correct": numbers_match(prediction["answer"], reference)}


def score_choice(output: str, letter: str) -> dict:
    """One multiple-choice output scored against the right letter."""
    prediction = extract_prediction(output, last=True)
    if prediction is None:
        return {"answer": None, "reasoning": None, "correct": False}
    return {**prediction, "correct": prediction["answer"] == letter}


def summarize(scored: list[dict]) -> dict:
    """Accuracy in percent over every item, the share without an answer, the mean reasoning length."""
    answered = [row for row in scored if row["answer"] is not None]
    return {
        "accuracy": 100 * sum(row["correct"] for row in scored) / len(scored),
        "no_answer": 100 * (len(scored) - len(answered)) / len(scored),
        "length": sum(len(row["reasoning"]) for row in answered) / len(answered) if answered else None,
    }
