"""From a recipe's `dataset_mixer` to tokenized train and test sets, with one log line per split."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from ..config.recipe import DataConfig
from ..errors import DataError
from .encode import PairEncoder
from .rows import Pair, read_pair
from .sources import load_split, split_role

logger = logging.getLogger("simpo")


def _features():
    from datasets import Features, List, Value

    ids, count = List(Value("int32")), Value("int32")
    flags = {"prompt_truncated": Value("bool"), "response_truncated": Value("bool"), "length": count, "drop": Value("string")}
    return Features({"prompt_ids": ids, "chosen_ids": ids, "rejected_ids": ids, "chosen_unscored": count, "rejected_unscored": count, **flags})


def _encode_source(label: str, rows, row_numbers, encoder: PairEncoder, num_proc: int | None):
    def encode(row: dict, index: int) -> dict:
        where = f"{label}, row {row_numbers[index] + 1}"  # counted from 1: line N of a JSON Lines file
        pair = read_pair(row, where)
        if not isinstance(pair, Pair):
            empty = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": [], "chosen_unscored": 0, "rejected_unscored": 0, "length": 0}
            return {**empty, "prompt_truncated": False, "response_truncated": False, "drop": pair}
        return {**encoder.encode(pair, where), "drop": ""}

    return rows.map(
        encode,
        with_indices=True,
        remove_columns=rows.column_names,
        features=_features(),
        num_proc=num_proc if num_proc and len(rows) > 1000 else None,
        desc=f"tokenizing {label}",
        load_from_cache_file=False,
    )


def build_pair_datasets(config: DataConfig, encoder: PairEncoder, seed: int = 42):
    """(train, test) datasets of tokenized pairs; test is None when no source has a test split."""
    from datasets import concatenate_datasets

    parts: dict[str, list] = {"train": [], "test": []}
    for split in config.dataset_splits:
        role = split_role(split)
        for source, fraction in config.dataset_mixer.items():
            loaded = load_split(source, split)
            if loaded is None:
                logger.info("%s has no split %r", source, split)
                continue
            label, rows = loaded
            row_numbers = np.arange(len(rows))
            if role == "train" and fraction < 1:
                # The official mixer (alignment-handbook's) takes the first rows of each training source.
                row_numbers = row_numbers[: int(fraction * len(rows))]
                rows = rows.select(row_numbers)
            parts[role].append(_encode_source(label, rows, row_numbers, encoder, config.preprocessing_num_workers))
    if not parts["train"]:
        raise DataError(f"no training rows: none of {list(config.dataset_mixer)} has a split among {config.dataset_splits}")
    train = _keep_and_report("train", concatenate_datasets(parts["train"])).shuffle(seed=seed)
    test = _keep_and_report("test", concatenate_datasets(parts["test"])) if parts["test"] else None
    if test is None:
        logger.warning("no test split in %s: evaluation is off", list(config.dataset_mixer))
    return train, test


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
