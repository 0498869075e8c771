"""Prompt files that generation cannot use (`simpo pipeline`); each fails before the first sample,
naming the file and the line (faults of the file's text) or the row (faults of a row's content),
both counted from 1."""

from __future__ import annotations

import json

from . import Case, prompts_case


def jsonl(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


GOOD = {"prompt": "What is 2 + 3?", "answer": 5}
# Scored by the constraints reward, the same file's prompts held out (so that they too carry constraints).
CONSTRAINTS = {"annotate.rewards": [{"type": "constraints"}], "evaluate.prompts": "prompts.jsonl", "evaluate.split": "train"}


def constraints_case(name: str, expect: str, constraints) -> Case:
    """A pipeline scored by the constraints reward, whose second prompt row has `constraints`."""
    rows = jsonl({"prompt": "Say hi.", "constraints": {"max_words": 3}}, {"prompt": "Say hello.", "constraints": constraints})
    return prompts_case(name, expect, rows, CONSTRAINTS)


CASES = [
    # The file's text and columns.
    prompts_case("prompts-no-prompt-column", "'prompt'", jsonl({"question": "What is 2 + 3?", "answer": 5})),
    prompts_case("prompts-invalid-utf8", "line 1", b'{"prompt": "\xff", "answer": 1}\n'),
    prompts_case("prompts-utf16", "prompts.jsonl: the file is UTF-16", jsonl(GOOD).encode("utf-16")),
    prompts_case("prompts-empty-file", "prompts.jsonl: the file has no rows", ""),
    prompts_case("prompts-truncated-last-line", "line 2: the line ends before its JSON object does", jsonl(GOOD) + '{"prompt": "What is'),
    prompts_case("prompts-json-array-in-jsonl", "line 1: the line holds a list", json.dumps([GOOD, GOOD]) + "\n"),
    prompts_case("prompts-plain-text-lines", "line 1: not valid JSON", "What is 2 + 3?\nWhat is 1 + 1?\n"),
    prompts_case("prompts-mixed-types", "line 2: 'prompt' is the string '12'",
         jsonl({"prompt": [{"role": "user", "content": "What is 2 + 10?"}], "answer": 12}, {"prompt": "12", "answer": 12})),
    prompts_case("prompts-folder-without-train-split", "has no split 'train'", jsonl(GOOD), {"generate.prompts": "prompts"}, file="prompts/test.jsonl"),
    prompts_case("prompts-every-row-unusable", "no usable prompts in prompts.jsonl",
         jsonl({"prompt": [{"role": "usr", "content": "What is 2 + 3?"}], "answer": 5}, {"prompt": "  ", "answer": 2})),
    # Text the chat template would read as its own tokens.
    prompts_case("prompts-control-token", "prompts.jsonl, row 2: 'user' text holds '<|im_end|>'",
         jsonl(GOOD, {"prompt": "Hi<|im_end|>\n<|im_start|>user\nWhat is 1 + 1?", "answer": 2})),
    prompts_case("prompts-rendered-already", "row 1: 'user' text holds '<|im_start|>'",
         jsonl({"prompt": "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n", "answer": 5})),
    # References of the numeric_answer reward.
    prompts_case("prompts-missing-answer", "row 2", jsonl(GOOD, {"prompt": "What is 1 + 1?"})),
    prompts_case("prompts-answer-not-a-number", "row 1: the numeric_answer reward needs a reference number in 'answer', got 'five'",
         jsonl({**GOOD, "answer": "five"})),
    prompts_case("prompts-answer-boolean", "row 1: the numeric_answer reward needs a reference number in 'answer', got True",
         jsonl({**GOOD, "answer": True})),
    prompts_case("prompts-answer-key-absent", "row 1: the numeric_answer reward needs a reference number in 'solution'", jsonl(GOOD),
         {"annotate.rewards": [{"type": "numeric_answer", "answer_key": "solution"}]}),
    # Values of the constraints reward.
    prompts_case("prompts-max-words-string", "max_words", jsonl({"prompt": "Say hi.", "constraints": {"max_words": "5"}}), CONSTRAINTS),
    prompts_case("prompts-keywords-string", "keywords", jsonl({"prompt": "Say hello.", "constraints": {"keywords": "hello"}}), CONSTRAINTS),
    prompts_case("prompts-constraint-unknown", "max_lines", jsonl({"prompt": "Say hi.", "constraints": {"max_lines": 2}}), CONSTRAINTS),
    constraints_case("prompts-max-words-zero", "row 2: constraint 'max_words' must be a positive whole number, got 0", {"max_words": 0}),
    constraints_case("prompts-max-words-fraction", "row 2: constraint 'max_words' must be a positive whole number, got 2.5", {"max_words": 2.5}),
    constraints_case("prompts-max-words-boolean", "row 2: constraint 'max_words' must be a positive whole number, got True", {"max_words": True}),
    constraints_case("prompts-max-words-nan", "row 2: constraint 'max_words' must be a positive whole number, got nan", {"max_words": float("nan")}),
    constraints_case("prompts-lowercase-string", "row 2: constraint 'lowercase' must be true or false, got 'yes'", {"lowercase": "yes"}),
    constraints_case("prompts-keywords-not-strings", "row 2: constraint 'keywords' must be a list of non-empty strings, got [1, 2]", {"keywords": [1, 2]}),
    constraints_case("prompts-keywords-empty-string", "row 2: constraint 'keywords' must be a list of non-empty strings", {"keywords": ["hello", ""]}),
    constraints_case("prompts-constraints-empty", "row 2: the constraints reward needs a 'constraints' mapping", {}),
    constraints_case("prompts-constraints-a-list", "row 2: the constraints reward needs a 'constraints' mapping", ["max_words", 3]),
    prompts_case("prompts-constraints-missing", "row 1: the constraints reward needs a 'constraints' mapping", jsonl({"prompt": "Say hi."}), CONSTRAINTS),
]
