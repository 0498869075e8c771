"""From a recipe's `dataset_mixer` to tokenized train and test sets, with one log line per split.

Every pair keeps where it came from: `source` (the mixer source's label, as data errors name it)
and `row` (its row there, counted from 1: line N of a JSON Lines file), through dropping and
shuffling, so that the trainer can name the rows of a batch (`data.collate`, `training.nonfinite`).
"""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial

from ..config.recipe import DataConfig
from ..errors import DataError
from .encode import PairEncoder
from .rows import Pair, read_pair
from .sources import encode_rows, mixed_splits

logger = logging.getLogger("simpo")


def _features():
    from datasets import Features, List, Value

    ids, count = List(Value("int32")), Value("int32")
    flags = {"prompt_truncated": Value("bool"), "response_truncated": Value("bool"), "length": count, "drop": Value("string")}
    return Features({"prompt_ids": ids, "chosen_ids": ids, "rejected_ids": ids, "chosen_unscored": count, "rejected_unscored": count, **flags})


def _encode(encoder: PairEncoder, row: dict, where: str) -> dict:
    pair = read_pair(row, where)
    if not isinstance(pair, Pair):
        empty = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": [], "chosen_unscored": 0, "rejected_unscored": 0, "length": 0}
        return {**empty, "prompt_truncated": False, "response_truncated": False, "drop": pair}
    return {**encoder.encode(pair, where), "drop": ""}


def build_pair_datasets(config: DataConfig, encoder: PairEncoder, seed: int = 42):
    """(train, test) datasets of tokenized pairs; test is None when no source has a test split."""
    from datasets import concatenate_datasets

    parts: dict[str, list] = {"train": [], "test": []}
    for role, label, rows in mixed_splits(config.dataset_mixer, config.dataset_splits):
        encoded = encode_rows(label, rows, partial(_encode, encoder), _features(), config.preprocessing_num_workers)
        parts[role].append(_with_row_ids(encoded, label))
    train = _keep_and_report("train", concatenate_datasets(parts["train"])).shuffle(seed=seed)
    test = _keep_and_report("test", concatenate_datasets(parts["test"])) if parts["test"] else None
    if test is None:
        logger.warning("no test split in %s: evaluation is off", list(config.dataset_mixer))
    return train, test


def _with_row_ids(encoded, label: str):
    """The encoded rows with their `source` (label) and `row` (counted from 1, as `encode_rows` names them)."""
    from datasets import Value

    encoded = encoded.add_column("source", [label] * len(encoded), feature=Value("string"))
    return encoded.add_column("row", list(range(1, len(encoded) + 1)), feature=Value("int32"))


def _keep_and_report(role: str, encoded):
    drops = Counter(reason for reason in encoded["drop"] if reason)
    kept = encoded.filter(lambda reason: not reason, input_columns="drop").remove_columns("drop")
    if not len(kept):
        raise DataError(f"every {role} row was dropped ({dict(drops)}): check the dataset")
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(drops.items())) or "none"
    logger.warning(
        "%s: %d pairs; dropped: %s; truncated: %d prompts, %d pairs of responses",
        role,
        len(kept),
        dropped,
        sum(kept["prompt_truncated"]),
        sum(kept["response_truncated"]),
    )
    return kept
