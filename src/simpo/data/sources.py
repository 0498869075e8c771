"""Reading the datasets a recipe's `dataset_mixer` names, split by split.

A source is, in this order: a folder written by `datasets.save_to_disk`; a folder holding
`{split}.jsonl` / `{split}.json` / `{split}.parquet`; a single JSONL/JSON/parquet file (it serves
the train split only); otherwise a dataset name on the Hugging Face hub (for online users).

A JSON Lines or JSON file is checked in Python before `datasets` reads it (`check_json_file`), so
that what its reader would refuse without a line number, or read differently from what the file
says, is an error naming the line; a parquet file must have parquet's marks (`check_parquet_file`).
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import DataError, read_json

logger = logging.getLogger("simpo")

FILE_KINDS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}

_KINDS = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list", dict: "an object"}
_MAY_BE_JSON = re.compile(r"[ \t\r\n]*[-\d\"\[{tfnNI]")  # how a string that parses as JSON begins


def split_role(split: str) -> str:
    """Official rule: a split whose name contains 'train' trains, one containing 'test' evaluates."""
    if "train" in split:
        return "train"
    if "test" in split:
        return "test"
    raise DataError(f"dataset split {split!r} must contain 'train' or 'test' in its name (dataset_splits)")


def _object(pairs: list[tuple]) -> dict:
    """A JSON object that names each key once (`datasets` refuses a repeated key; `json` keeps the last)."""
    row = dict(pairs)
    if len(row) < len(pairs):
        seen = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise DataError(f"the key {repeated!r} appears twice in one object; keep one")
    return row


def _json_fault(err: json.JSONDecodeError, text: str, cut_off: str) -> str:
    if err.msg.startswith("Unterminated string") or err.pos >= len(text.rstrip()):
        return cut_off
    if text[err.pos] in "}]" and text[: err.pos].rstrip().endswith(","):
        return f"a trailing comma before {text[err.pos]!r} at column {err.colno}; JSON allows none, delete it"
    return f"not valid JSON: {err.msg} at column {err.colno}"


def _text_lines(path: Path):
    """(number, text) of every line of a UTF-8 file (a leading UTF-8 byte order mark dropped), read
    one line at a time."""
    with path.open("rb") as file:
        if file.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise DataError(f"{path}: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8")
        file.seek(0)
        for number, raw in enumerate(file, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}, line {number}: byte {raw[err.start]:#04x} is not UTF-8; save the file as UTF-8") from None
            if "\x00" in line:
                raise DataError(f"{path}, line {number}: a NUL character, as in UTF-16 text or a binary file; save the file as UTF-8 text")
            yield number, line


def _json_lines(path: Path):
    """(where, row) of every non-blank line: each line one JSON object."""
    for number, line in _text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=_object)
        except json.JSONDecodeError as err:
            cut_off = ("the line ends before its JSON object does: is the file cut off, or an object spread over several "
                       "lines? Write one whole object per line")
            raise DataError(f"{path}, line {number}: {_json_fault(err, line, cut_off)}") from None
        except DataError as err:
            raise DataError(f"{path}, line {number}: {err}") from None
        if not isinstance(row, dict):
            layout = "a .jsonl file holds one object per line; a .json file may hold one array of objects"
            raise DataError(f"{path}, line {number}: the line holds {_KINDS.get(type(row), 'null')}, not a JSON object; {layout}")
        yield f"line {number}", row


def _json_array(path: Path):
    """(where, row) of every item of a file that is one JSON array of objects."""
    text = "".join(line for _, line in _text_lines(path))
    try:
        items = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as err:
        fault = _json_fault(err, text, "the file ends before its JSON array does; is it cut off?")
        raise DataError(f"{path}, line {err.lineno}: {fault}") from None
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    for number, row in enumerate(items, 1):
        if not isinstance(row, dict):
            raise DataError(f"{path}, row {number}: the item is {_KINDS.get(type(row), 'null')}, not a JSON object; the array holds one object per row")
        yield f"row {number}", row


class _FieldTypes:
    """The JSON types of every field (a column, or a key or list item inside one) across rows.

    `datasets`' JSON reader stores a field that holds two types as JSON text and decodes it on read,
    so a string there that is itself JSON changes: `"\\"hi\\""` is read as `hi`, `"5"` as 5."""

    def __init__(self):
        from datasets.utils.json import ujson_loads  # the reader's own decoder: what it would decode

        self.decode = ujson_loads
        self.kinds: dict[str, dict[str, str]] = {}  # field -> {type: where it first appears}
        self.json_string: dict[str, tuple[str, str]] = {}  # field -> (where, value) of its first JSON-looking string

    def add(self, value, field: str, where: str) -> None:
        if value is None:  # a missing value, which every type allows
            return
        self.kinds.setdefault(field, {}).setdefault(_KINDS[type(value)], where)
        if isinstance(value, dict):
            for key, item in value.items():
                self.add(item, f"{field}.{key}", where)
        elif isinstance(value, list):
            for item in value:
                self.add(item, f"{field}[]", where)
        elif isinstance(value, str) and field not in self.json_string and _MAY_BE_JSON.match(value):
            try:
                self.decode(value)
            except ValueError:
                return
            self.json_string[field] = (where, value)

    def check(self, path: Path) -> None:
        for field, (where, value) in self.json_string.items():
            others = [(kind, seen) for kind, seen in self.kinds[field].items() if kind != "a string"]
            if others:
                kind, seen = others[0]
                raise DataError(
                    f"{path}, {where}: {field!r} is the string {value!r:.60}, but {kind} in {seen}; datasets would read "
                    f"this string as JSON ({self.decode(value)!r:.40}): give {field!r} the same type in every row"
                )


def check_json_file(path: Path) -> None:
    """Refuse, naming the line, a JSON Lines or JSON file that `datasets` would refuse without a line
    number or read wrongly: not UTF-8 (UTF-16 included), a line that is not one JSON object (cut
    off, a trailing comma, a repeated key, an array in a .jsonl file), no rows at all, or a string
    that the reader would decode as JSON. A .json file holds one array of objects (its '[' the first
    character, as the reader requires) or JSON Lines."""
    number, first = next(((number, line) for number, line in _text_lines(path) if line.strip()), (0, ""))
    array = path.suffix == ".json" and first.lstrip().startswith("[")
    if array and not (number == 1 and first.startswith("[")):
        raise DataError(f"{path}, line {number}: datasets reads a JSON array only when '[' is the file's first character; "
                        "delete the blank space before it")
    fields, count = _FieldTypes(), 0
    for where, row in _json_array(path) if array else _json_lines(path):
        for key, value in row.items():
            fields.add(value, key, where)
        count += 1
    if not count:
        raise DataError(f"{path}: the file has no rows; write one JSON object per line")
    fields.check(path)


def check_parquet_file(path: Path) -> None:
    """Refuse a file without parquet's `PAR1` marks at both ends (another format, or a cut-off
    download), which `datasets` reports with a logged error of its own besides the exception."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(4)
        file.seek(max(size - 4, 0))
        tail = file.read(4)
    if size < 12 or head != b"PAR1" or tail != b"PAR1":
        raise DataError(f"{path}: not a parquet file (it lacks parquet's PAR1 marks at its start and end; is it cut off?)")


def _from_file(path: Path):
    from datasets import load_dataset

    kind = FILE_KINDS[path.suffix]
    (check_json_file if kind == "json" else check_parquet_file)(path)
    try:
        return load_dataset(kind, data_files=str(path), split="train")
    except Exception as err:  # pyarrow/json errors: say which file
        raise DataError(f"{path}: cannot be read as {kind}: {err}") from None


SAVED_FILES = ("dataset_dict.json", "state.json", "dataset_info.json")  # what `save_to_disk` writes, each a JSON object


def _from_disk(path: Path):
    """A folder written by `datasets.save_to_disk`; a `DataError` naming the file when it is not one
    that `datasets` can read (a damaged or hand-made `state.json` or `dataset_dict.json`, a missing
    data file), never its traceback."""
    from datasets import load_from_disk

    splits = [path]
    if (path / "dataset_dict.json").is_file():
        listed = read_json(path / "dataset_dict.json", what="a file of datasets' save_to_disk").get("splits")
        if not isinstance(listed, list) or not all(isinstance(name, str) and name for name in listed):
            raise DataError(f"{path / 'dataset_dict.json'}: 'splits' is not a list of split names; the folder is damaged: save it again")
        splits = [path / name for name in listed]
    for folder in splits:
        for name in SAVED_FILES[1:]:
            if (folder / name).is_file():
                read_json(folder / name, what="a file of datasets' save_to_disk")
    try:
        return load_from_disk(str(path))
    except Exception as err:  # noqa: BLE001 - whatever datasets raises on a folder it cannot read: name the folder
        raise DataError(f"{path}: not a dataset folder that datasets can read ({type(err).__name__}: "
                        f"{' '.join(str(err).split())[:200]}); save it again with save_to_disk") from None


def load_split(source: str, split: str):
    """(label, dataset) of one split of one source, or None when the source has no such split."""
    from datasets import DatasetDict, load_dataset

    path = Path(source)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            saved = _from_disk(path)
            if isinstance(saved, DatasetDict):
                return (f"{source}[{split}]", saved[split]) if split in saved else None
            return (source, saved) if split_role(split) == "train" else None
        for suffix in FILE_KINDS:
            file = path / f"{split}{suffix}"
            if file.is_file():
                return str(file), _from_file(file)
        return None
    if path.is_file():
        if path.suffix not in FILE_KINDS:
            raise DataError(f"{source}: unknown file type; use .jsonl, .json or .parquet")
        return (source, _from_file(path)) if split_role(split) == "train" else None
    if path.suffix in FILE_KINDS or source.startswith((".", "/")):
        raise DataError(f"dataset {source} does not exist")
    try:
        return f"{source}[{split}]", load_dataset(source, split=split)
    except ValueError as err:
        if "split" in str(err).lower():
            return None
        raise DataError(f"dataset {source}: {err}") from None
    except Exception as err:  # offline, unknown name, no access
        raise DataError(f"dataset {source} is neither a local folder or file nor a reachable hub dataset: {err}") from None


def mixed_splits(mixer: dict[str, float], splits: list[str]) -> Iterator[tuple[str, str, object]]:
    """(role, label, rows) of each split of each `dataset_mixer` source: a training source cut to its
    first `fraction` of rows (the alignment-handbook mixer's rule), a test split whole. Raises
    `DataError` when no source has a training split."""
    trains = 0
    for split in splits:
        role = split_role(split)
        for source, fraction in mixer.items():
            loaded = load_split(source, split)
            if loaded is None:
                logger.info("%s has no split %r", source, split)
                continue
            label, rows = loaded
            if role == "train" and fraction < 1:
                rows = rows.select(range(int(fraction * len(rows))))
            trains += role == "train"
            yield role, label, rows
    if not trains:
        raise DataError(f"no training rows: none of {list(mixer)} has a split among {splits}")


def check_local_source(source: str, splits: list[str]) -> None:
    """Before anything loads: a local source is a file of a kind `load_split` reads, or a folder that
    `save_to_disk` wrote or that holds one of `splits` as a file; a `DataError` naming it otherwise
    (the run would refuse it, or read nothing from it, only after loading the model)."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix not in FILE_KINDS:
        raise DataError(f"dataset_mixer: {source}: unknown file type; use .jsonl, .json or .parquet")
    if not path.is_dir() or any((path / name).is_file() for name in SAVED_FILES[:2]):
        return
    if not any((path / f"{split}{suffix}").is_file() for split in splits for suffix in FILE_KINDS):
        wanted = ", ".join(f"{split}.jsonl" for split in splits)
        raise DataError(f"dataset_mixer: the folder {source} holds none of {wanted} (nor .json or .parquet files of those "
                        "splits), and is not a dataset saved with save_to_disk")


def encode_rows(label: str, rows, encode: Callable[[dict, str], dict], features, num_proc: int | None):
    """`encode(row, where)` over the rows, `where` naming the row ("LABEL, row N", N counted from 1:
    line N of a JSON Lines file), into `features`; in `num_proc` processes above 1,000 rows."""
    return rows.map(
        lambda row, index: encode(row, f"{label}, row {index + 1}"),
        with_indices=True,
        remove_columns=rows.column_names,
        features=features,
        num_proc=num_proc if num_proc and len(rows) > 1000 else None,
        desc=f"tokenizing {label}",
        load_from_cache_file=False,
    )
