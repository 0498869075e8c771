"""Preference data files and rows that cannot be trained on (`simpo train`); each error names the
file and the line (faults of the file's text) or the row (faults of a row's content), both counted
from 1, as an editor shows lines."""

from __future__ import annotations

import json

from . import rows_case, train_case


def jsonl(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


USER = {"role": "user", "content": "What is 2 + 3?"}
OTHER_USER = {"role": "user", "content": "What is 1 + 1?"}
SYSTEM = {"role": "system", "content": "Answer with a number."}
RIGHT = {"role": "assistant", "content": "5"}
WRONG = {"role": "assistant", "content": "6"}
GOOD = {"prompt": [USER], "chosen": [RIGHT], "rejected": [WRONG]}
LINE = json.dumps(GOOD)

CASES = [
    # The file's text.
    rows_case("row-invalid-utf8", "line 2", jsonl(GOOD).encode() + b'{"prompt": "\xff\xfe", "chosen": "a", "rejected": "b"}\n'),
    rows_case("rows-latin1", "line 1: byte 0xe9 is not UTF-8", '{"prompt": "caf\u00e9?", "chosen": "a", "rejected": "b"}\n'.encode("latin-1")),
    rows_case("rows-utf16-with-bom", "UTF-16", jsonl(GOOD).encode("utf-16")),
    rows_case("rows-utf16-without-bom", "line 1: a NUL character", jsonl(GOOD).encode("utf-16-le")),
    rows_case("rows-bom-inside-file", "line 2: not valid JSON: Unexpected UTF-8 BOM", jsonl(GOOD) + "\ufeff" + jsonl(GOOD)),
    rows_case("row-truncated-last-line", "line 2", jsonl(GOOD) + '{"prompt": "hi", "chos'),
    rows_case("row-trailing-comma", "line 1", '{"prompt": "hi", "chosen": "a", "rejected": "b",}\n'),
    rows_case("row-python-repr", "line 1: not valid JSON: Expecting property name enclosed in double quotes",
              "{'prompt': 'hi', 'chosen': 'a', 'rejected': 'b'}\n"),
    rows_case("row-comment-line", "line 1: not valid JSON", "// pairs for the demo\n" + jsonl(GOOD)),
    rows_case("row-two-objects-on-one-line", "line 1: not valid JSON: Extra data", LINE + " " + LINE + "\n"),
    rows_case("row-pretty-printed-object", "line 1: the line ends before its JSON object does", json.dumps(GOOD, indent=2) + "\n"),
    rows_case("row-repeated-key", "line 2: the key 'chosen' appears twice",
              jsonl(GOOD) + '{"prompt": "hi", "chosen": "a", "chosen": "c", "rejected": "b"}\n'),
    rows_case("rows-empty-file", "pairs.jsonl: the file has no rows", ""),
    rows_case("rows-blank-lines-only", "pairs.jsonl: the file has no rows", "\n  \n\n"),
    rows_case("rows-json-array-in-jsonl", "line 1", json.dumps([GOOD, GOOD]) + "\n"),
    rows_case("row-line-is-a-string", "line 2: the line holds a string, not a JSON object", jsonl(GOOD, "What is 2 + 3?")),
    rows_case("row-line-is-null", "line 1: the line holds null", "null\n" + jsonl(GOOD)),
    rows_case("rows-json-file-cut-off", "line 2: the file ends before its JSON array does",
              "[" + LINE + ",\n" + LINE[:20], file="pairs.json"),
    rows_case("rows-json-file-trailing-comma", "a trailing comma before ']'", "[" + LINE + ",]", file="pairs.json"),
    rows_case("rows-json-file-item-not-object", "pairs.json, row 2: the item is a string", json.dumps([GOOD, "hi"]), file="pairs.json"),
    rows_case("rows-json-file-empty-array", "pairs.json: the file has no rows", "[]", file="pairs.json"),
    rows_case("rows-json-file-space-before-array", "pairs.json, line 1: datasets reads a JSON array only when '[' is the file's first character",
              " " + json.dumps([GOOD]), file="pairs.json"),
    rows_case("rows-json-file-one-pretty-object", "pairs.json, line 1: the line ends before its JSON object does",
              json.dumps({"data": [GOOD]}, indent=2), file="pairs.json"),
    rows_case("rows-mixed-types", "line 2: 'chosen' is the string", jsonl(GOOD, {"prompt": "hi", "chosen": "\"hi\"", "rejected": "no"})),
    rows_case("rows-mixed-types-nested", "line 1: 'prompt[].content' is the string '42', but a number in line 2",
              jsonl({**GOOD, "prompt": [{"role": "user", "content": "42"}]}, {**GOOD, "prompt": [{"role": "user", "content": 7}]})),
    rows_case("rows-unknown-file-type", "pairs.txt: unknown file type; use .jsonl, .json or .parquet", jsonl(GOOD), file="pairs.txt"),
    rows_case("rows-not-parquet", "pairs.parquet: not a parquet file", jsonl(GOOD), file="pairs.parquet"),
    rows_case("rows-empty-parquet-file", "pairs.parquet: not a parquet file", b"", file="pairs.parquet"),
    train_case("rows-missing-file", "dataset missing.jsonl does not exist", {"dataset_mixer": {"missing.jsonl": 1.0}}),
    train_case("rows-folder-without-train-split", "no training rows", {"dataset_mixer": {"pairs": 1.0}},
               files={"pairs/test.jsonl": jsonl(GOOD)}),
    train_case("rows-empty-train-file-in-folder", "pairs/train.jsonl: the file has no rows", {"dataset_mixer": {"pairs": 1.0}},
               files={"pairs/train.jsonl": "", "pairs/test.jsonl": jsonl(GOOD)}),
    # A row's keys and types.
    rows_case("row-missing-rejected", "row 2", jsonl(GOOD, {"prompt": "hi", "chosen": "a"})),
    rows_case("row-missing-chosen", "row 1: missing 'chosen'", jsonl({"prompt": "hi", "rejected": "a"})),
    rows_case("row-missing-prompt", "row 1: missing 'prompt'", jsonl({"chosen": "5", "rejected": "6"})),
    rows_case("row-chosen-number", "row 1: 'chosen' must be a string or a non-empty list", jsonl({"prompt": "hi", "chosen": 5, "rejected": "6"})),
    rows_case("row-chosen-one-message-object", "row 1: 'chosen' must be a string or a non-empty list", jsonl({**GOOD, "chosen": RIGHT})),
    rows_case("row-chosen-empty-list", "row 1: 'chosen' must be a string or a non-empty list", jsonl({**GOOD, "chosen": []})),
    rows_case("row-prompt-number", "row 1: 'prompt' must be a string or a non-empty list", jsonl({**GOOD, "prompt": 7})),
    rows_case("row-message-without-content", "row 1: 'rejected' has a message that is not", jsonl({**GOOD, "rejected": [{"role": "assistant"}]})),
    rows_case("row-messages-as-strings", "row 1: 'chosen' has a message that is not", jsonl({**GOOD, "chosen": ["5"], "rejected": ["6"]})),
    rows_case("row-content-parts", "row 1: 'prompt' has a message that is not",
              jsonl({**GOOD, "prompt": [{"role": "user", "content": [{"type": "text", "text": "What is 2 + 3?"}]}]})),
    # A row's conversation.
    rows_case("row-unknown-role", "row 1", jsonl({"prompt": [{"role": "usr", "content": "hi"}], "chosen": [RIGHT], "rejected": [WRONG]})),
    rows_case("row-tool-role", "row 1: turn 2 of 'prompt' has role 'tool'",
              jsonl({**GOOD, "prompt": [USER, {"role": "tool", "content": "5"}, OTHER_USER]})),
    rows_case("row-assistant-first", "row 1", jsonl({"chosen": [RIGHT, USER, RIGHT], "rejected": [RIGHT, USER, WRONG]})),
    rows_case("row-two-user-turns", "row 1: turn 2 of 'prompt' is 'user' where 'assistant' is due", jsonl({**GOOD, "prompt": [USER, OTHER_USER]})),
    rows_case("row-system-not-first", "row 1: turn 2 of 'prompt' is 'system'", jsonl({**GOOD, "prompt": [USER, SYSTEM]})),
    rows_case("row-prompt-ends-with-assistant", "row 1", jsonl({"prompt": [USER, RIGHT], "chosen": [RIGHT], "rejected": [WRONG]})),
    rows_case("row-system-only-prompt", "row 1", jsonl({"prompt": [{"role": "system", "content": "be nice"}], "chosen": [RIGHT], "rejected": [WRONG]})),
    rows_case("row-answer-with-user-role", "row 1: the last turn of 'chosen' has role 'user'", jsonl({**GOOD, "chosen": [{"role": "user", "content": "5"}]})),
    rows_case("row-ends-with-user", "row 1", jsonl({"chosen": [USER, RIGHT, USER], "rejected": [USER, WRONG, USER]})),
    rows_case("row-two-assistant-turns", "row 1", jsonl({"prompt": "What is 2 + 3?", "chosen": [RIGHT, RIGHT], "rejected": [WRONG, WRONG]})),
    rows_case("row-prompt-not-in-conversation", "row 1: 'prompt' is not the prompt of the 'chosen' conversation",
              jsonl({"prompt": "What is 1 + 1?", "chosen": [USER, RIGHT], "rejected": [USER, WRONG]})),
    rows_case("row-list-prompt-not-the-conversation", "row 1: 'prompt' is not the prompt of the 'chosen' conversation",
              jsonl({"prompt": [SYSTEM, USER], "chosen": [USER, RIGHT], "rejected": [USER, WRONG]})),
    rows_case("row-conversations-differ", "row 1: 'chosen' and 'rejected' conversations differ before their last turn",
              jsonl({"chosen": [USER, RIGHT], "rejected": [OTHER_USER, WRONG]})),
    rows_case("row-conversation-beside-answer", "row 1: 'chosen' is a whole conversation but 'rejected' only the answer",
              jsonl({"prompt": "What is 2 + 3?", "chosen": [USER, RIGHT], "rejected": "6"})),
    # A row's text against the chat template.
    rows_case("row-control-tokens", "row 1", jsonl({"prompt": "hi<|im_end|>\n<|im_start|>user\nhello", "chosen": "a", "rejected": "b"})),
    rows_case("row-control-token-in-answer", "row 2: 'assistant' text holds '<|im_end|>'", jsonl(GOOD, {**GOOD, "chosen": "5<|im_end|>"})),
    rows_case("row-eos-in-answer", "row 1: 'assistant' text holds '<|endoftext|>'", jsonl({**GOOD, "rejected": "6<|endoftext|>"})),
    rows_case("row-prompt-rendered-already", "row 1: 'user' text holds '<|im_start|>'",
              jsonl({**GOOD, "prompt": "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"})),
    # Rows that are all dropped.
    rows_case("rows-all-dropped", "every train row was dropped", jsonl({**GOOD, "rejected": [RIGHT]}, {**GOOD, "chosen": [{"role": "assistant", "content": " "}]})),
]

# Folders written by save_to_disk whose JSON files are damaged, or whose data is missing: each named.
SAVED = {"saved/state.json": '{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}',
         "saved/dataset_info.json": "{}"}
CASES += [
    train_case("saved-state-not-json", "saved/state.json (a file of datasets' save_to_disk): not valid JSON",
               {"dataset_mixer": {"saved": 1.0}}, files={**SAVED, "saved/state.json": '{"_data_files": '}),
    train_case("saved-state-a-list", "saved/state.json (a file of datasets' save_to_disk): holds a JSON array",
               {"dataset_mixer": {"saved": 1.0}}, files={**SAVED, "saved/state.json": "[]"}),
    train_case("saved-without-data", "saved: not a dataset folder that datasets can read", {"dataset_mixer": {"saved": 1.0}}, files=SAVED),
    train_case("saved-dict-splits-word", "saved/dataset_dict.json: 'splits' is not a list of split names",
               {"dataset_mixer": {"saved": 1.0}}, files={"saved/dataset_dict.json": '{"splits": "train"}'}),
    train_case("saved-dict-not-json", "saved/dataset_dict.json (a file of datasets' save_to_disk): not valid JSON",
               {"dataset_mixer": {"saved": 1.0}}, files={"saved/dataset_dict.json": "splits: [train]"}),
    train_case("saved-split-missing", "saved: not a dataset folder that datasets can read",
               {"dataset_mixer": {"saved": 1.0}}, files={"saved/dataset_dict.json": '{"splits": ["train"]}'}),
]

# dataset_mixer sources the real run would refuse or read nothing from, refused by --dry-run too:
# an empty name, a file of an unknown kind, a folder that holds no dataset.
CASES += [
    train_case("mixer-empty-name", "dataset_mixer names an empty source ''", {"dataset_mixer": {"": 1.0}}),
    train_case("mixer-unknown-file-type", "notes.txt: unknown file type", {"dataset_mixer": {"notes.txt": 1.0}},
               files={"notes.txt": "5 beats 6"}),
    train_case("mixer-folder-without-splits", "the folder pairs holds none of train.jsonl, test.jsonl",
               {"dataset_mixer": {"pairs": 1.0}}, files={"pairs/README.md": "pairs go here"}),
]

# One source named twice (paths compared resolved): its rows would be read twice.
CASES += [
    train_case("mixer-one-folder-twice", "dataset_mixer names one source twice: 'pairs' and './pairs'",
               {"dataset_mixer": {"pairs": 1.0, "./pairs": 1.0}}, files={"pairs/train.jsonl": jsonl(GOOD)}),
    train_case("mixer-one-folder-twice-slash", "dataset_mixer names one source twice",
               {"dataset_mixer": {"{repo}/data/verifiable-prefs": 1.0, "{repo}/data/../data/verifiable-prefs/": 0.5}}),
]
