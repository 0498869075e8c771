"""Reading the datasets a recipe's `dataset_mixer` names, split by split.

A source is, in this order: a folder written by `datasets.save_to_disk`; a folder holding
`{split}.jsonl` / `{split}.json` / `{split}.parquet`; a single JSONL/JSON/parquet file (it serves
the train split only); otherwise a dataset name on the Hugging Face hub (for online users).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError

FILE_KINDS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def split_role(split: str) -> str:
    """Official rule: a split whose name contains 'train' trains, one containing 'test' evaluates."""
    if "train" in split:
        return "train"
    if "test" in split:
        return "test"
    raise DataError(f"dataset split {split!r} must contain 'train' or 'test' in its name (dataset_splits)")


def _from_file(path: Path):
    from datasets import load_dataset

    try:
        return load_dataset(FILE_KINDS[path.suffix], data_files=str(path), split="train")
    except Exception as err:  # pyarrow/json errors: say which file
        raise DataError(f"{path}: cannot be read as {FILE_KINDS[path.suffix]}: {err}") from None


def load_split(source: str, split: str):
    """(label, dataset) of one split of one source, or None when the source has no such split."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(source)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            saved = load_from_disk(str(path))
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
