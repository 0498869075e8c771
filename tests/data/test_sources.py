"""Sources: a JSON Lines or JSON file is checked before `datasets` reads it, so that a fault of its
text is named by line, and what the reader would change (a string it decodes as JSON) is refused;
what it reads as written passes."""

import json

import pytest
from helpers import write_jsonl

from simpo.data.sources import check_json_file, load_split
from simpo.errors import DataError

GOOD = {"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "6"}
LINE = json.dumps(GOOD)
CUT_OFF = ("the line ends before its JSON object does: is the file cut off, or an object spread over several lines? "
           "Write one whole object per line")
NOT_AN_OBJECT = "not a JSON object; a .jsonl file holds one object per line; a .json file may hold one array of objects"


@pytest.mark.parametrize("name,content,message", [
    ("f.jsonl", f"{LINE}\n".encode() + b'{"prompt": "caf\xe9"}\n', "f.jsonl, line 2: byte 0xe9 is not UTF-8; save the file as UTF-8"),
    ("f.jsonl", f"{LINE}\n".encode("utf-16"), "f.jsonl: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"),
    ("f.jsonl", f"{LINE}\n".encode("utf-16-le"),
     "f.jsonl, line 1: a NUL character, as in UTF-16 text or a binary file; save the file as UTF-8 text"),
    ("f.jsonl", f"{LINE}\n{LINE[:30]}".encode(), f"f.jsonl, line 2: {CUT_OFF}"),
    ("f.jsonl", f"{LINE}\n\n{LINE[:-1]},}}\n".encode(),
     f"f.jsonl, line 3: a trailing comma before '}}' at column {len(LINE) + 1}; JSON allows none, delete it"),
    ("f.jsonl", b'{"prompt": "a", "prompt": "b"}\n', "f.jsonl, line 1: the key 'prompt' appears twice in one object; keep one"),
    ("f.jsonl", f"{LINE} {LINE}\n".encode(), "f.jsonl, line 1: not valid JSON: Extra data at column 62"),
    ("f.jsonl", f"[{LINE}]\n".encode(), f"f.jsonl, line 1: the line holds a list, {NOT_AN_OBJECT}"),
    ("f.jsonl", f"{LINE}\n42\n".encode(), f"f.jsonl, line 2: the line holds a number, {NOT_AN_OBJECT}"),
    ("f.jsonl", b"\n \n", "f.jsonl: the file has no rows; write one JSON object per line"),
    ("f.json", b"[]", "f.json: the file has no rows; write one JSON object per line"),
    ("f.json", f'[{LINE}, "hi"]'.encode(), "f.json, row 2: the item is a string, not a JSON object; the array holds one object per row"),
    ("f.json", f"[\n{LINE},\n{LINE[:30]}".encode(), "f.json, line 3: the file ends before its JSON array does; is it cut off?"),
    ("f.json", json.dumps(GOOD, indent=2).encode(), f"f.json, line 1: {CUT_OFF}"),
    ("f.json", f"\n  [{LINE}]".encode(),
     "f.json, line 2: datasets reads a JSON array only when '[' is the file's first character; delete the blank space before it"),
])
def test_a_fault_of_the_text_names_the_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as raised:
        check_json_file(path)
    assert str(raised.value) == f"{tmp_path}/{message}"


def test_a_json_file_holds_an_array_of_objects_or_json_lines(tmp_path):
    rows = [GOOD, {**GOOD, "prompt": "What is 1 + 1?"}]
    (tmp_path / "array.json").write_text("\ufeff" + json.dumps(rows, indent=2))  # a UTF-8 byte order mark is fine
    (tmp_path / "lines.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    for name in ("array.json", "lines.json"):
        label, dataset = load_split(str(tmp_path / name), "train")
        assert (label, dataset.to_list()) == (str(tmp_path / name), rows)


def test_a_string_the_reader_would_decode_as_json_is_refused(tmp_path):
    # datasets stores a field of two types as JSON text: '"hi"' would come back as hi, "5" as 5.
    path = write_jsonl(tmp_path / "f.jsonl", [{**GOOD, "chosen": [{"role": "assistant", "content": "5"}]}, {**GOOD, "chosen": '"hi"'}])
    with pytest.raises(DataError) as raised:
        check_json_file(path)
    assert str(raised.value) == (f"{path}, line 2: 'chosen' is the string '\"hi\"', but a list in line 1; datasets would read "
                                 "this string as JSON ('hi'): give 'chosen' the same type in every row")
    nested = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "q", "constraints": {"max_words": 3}}, {"prompt": "q", "constraints": {"max_words": "5"}}])
    with pytest.raises(DataError, match=r"line 2: 'constraints.max_words' is the string '5', but a number in line 1"):
        check_json_file(nested)


@pytest.mark.parametrize("rows", [
    # Two types in one field, no string in it that is JSON: read as written (the layouts may differ by row).
    [{**GOOD, "chosen": [{"role": "assistant", "content": "5"}]}, {**GOOD, "chosen": "hi"}],
    [{"prompt": "q", "answer": 5}, {"prompt": "q", "answer": "1/2"}],
    # Strings that are JSON, in a field of one type: strings stay strings.
    [{"prompt": "q", "answer": "5"}, {"prompt": "q", "answer": '"7"'}],
    # Whole numbers and fractions are one type; null goes with any.
    [{"prompt": "q", "answer": 5}, {"prompt": "q", "answer": 2.5}, {"prompt": "q", "answer": None}],
])
def test_what_the_reader_reads_as_written_passes(tmp_path, rows):
    path = write_jsonl(tmp_path / "f.jsonl", rows)
    check_json_file(path)
    assert load_split(str(path), "train")[1].to_list() == rows


def test_a_file_without_parquet_marks_is_refused(tmp_path):
    path = tmp_path / "f.parquet"
    path.write_text(LINE)
    with pytest.raises(DataError) as raised:
        load_split(str(path), "train")
    assert str(raised.value) == f"{path}: not a parquet file (it lacks parquet's PAR1 marks at its start and end; is it cut off?)"
