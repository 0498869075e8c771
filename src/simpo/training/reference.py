"""Reference log-probs for the losses that need them (dpo, ipo, kto_pair, rdpo), computed once and cached.

Before the first step, one no-grad pass of the reference model over a tokenized split gives each
pair's summed response log-probs under the reference, added to the split as the columns
`ref_chosen_logps` and `ref_rejected_logps` (the collator hands them to the loss in batch order).
The reference model is not needed during training, so it is freed.

The values are cached in `$SIMPO_HOME/ref-logps/<key>/` (default `~/.cache/simpo`), where the key
hashes everything that determines them: the reference model (its folder or hub name and commit,
its config, the size and modification time of its weight files, its dtype and attention
implementation), the mixed-precision mode the pass runs under, and the split's token ids in order
(which already reflect the tokenizer, chat template, rows, truncation settings and `max_length`).
Batch layout (`padding_free`) and `logps_chunk_size` change the values only by floating-point
noise, so they are not part of the key. A cache folder is written beside its final name and
renamed into place, so an interrupted run never leaves half a cache; its `key.json` records the
values file's size and SHA-256, checked when it is read: a damaged cache (cut short, edited) is
never used, but computed again and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from ..data.collate import REF_COLUMNS
from ..models.bundled import cache_home
from ..ops.attention import PREFIX
from ..ops.logprobs import response_logps

logger = logging.getLogger("simpo")

ID_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids", "chosen_unscored", "rejected_unscored")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def model_identity(model) -> dict | None:
    """What fixes a model's log-probs, or None for a model with no folder or hub name (built in memory)."""
    config = model.config
    source = getattr(config, "_name_or_path", "") or ""
    if not source:
        return None
    folder = Path(source)
    settings = {k: v for k, v in config.to_dict().items() if k not in ("_name_or_path", "transformers_version", "_commit_hash")}
    identity = {
        "source": str(folder.resolve()) if folder.is_dir() else source,
        "commit": getattr(config, "_commit_hash", None),
        "config": settings,
        "dtype": str(next(model.parameters()).dtype),
        "attention": str(config._attn_implementation).removeprefix(PREFIX),
    }
    if folder.is_dir():
        identity["files"] = sorted(
            (path.name, path.stat().st_size, path.stat().st_mtime_ns)
            for path in folder.iterdir()
            if path.name == "config.json" or path.name.endswith(WEIGHT_SUFFIXES)
        )
    return identity


def dataset_digest(dataset) -> str:
    """SHA-256 of the split's prompt, chosen and rejected token ids and unscored counts, row by row in order."""
    digest = hashlib.sha256(str(len(dataset)).encode())
    for table in dataset.select_columns(list(ID_COLUMNS)).with_format("arrow").iter(batch_size=10_000):
        for column in ID_COLUMNS:
            values = table.column(column).combine_chunks()
            if hasattr(values, "value_lengths"):  # a list column: its lengths, then its flat ids
                digest.update(values.value_lengths().to_numpy(zero_copy_only=False).astype("int64").tobytes())
                values = values.flatten()
            digest.update(values.to_numpy(zero_copy_only=False).astype("int64").tobytes())
    return digest.hexdigest()


@torch.no_grad()
def compute_reference_logps(model, dataset, collator, batch_size: int, chunk_size: int = 0, device=None, autocast=contextlib.nullcontext):
    """(chosen, rejected): float32 tensors of each pair's summed response log-probs under `model`."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    ids = dataset.select_columns(list(ID_COLUMNS))
    try:
        for start in range(0, len(ids), batch_size):
            columns = ids[start : start + batch_size]
            features = [dict(zip(columns, values)) for values in zip(*columns.values())]
            batch = {key: value.to(device) for key, value in collator(features).items()}
            with autocast():
                sums = response_logps(model, batch, chunk_size).sums
            chosen.append(sums[: len(features)].float().cpu())
            rejected.append(sums[len(features) :].float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(chosen), torch.cat(rejected)


CACHE_FILE, KEY_FILE = "logps.safetensors", "key.json"


def _file_record(path: Path) -> dict:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _read_cache(folder: Path, pairs: int):
    """(chosen, rejected) from the cache folder, or None when it holds none or a damaged one (said in a
    warning: it is computed again and replaced). `key.json` records the file's size and SHA-256; a
    cache written before it did is checked by loading it and by its shapes."""
    from safetensors.torch import load_file

    path = folder / CACHE_FILE
    if not path.is_file():
        return None
    try:
        expected = json.loads((folder / KEY_FILE).read_text()).get("file")
        actual = _file_record(path) if expected is not None else None
        if expected is not None and actual != expected:
            raise ValueError(f"{actual['bytes']} bytes, not the {expected.get('bytes')} written")
        values = load_file(path)
        chosen, rejected = values["chosen"], values["rejected"]
        if chosen.shape != (pairs,) or rejected.shape != (pairs,):
            raise ValueError(f"{tuple(chosen.shape)} and {tuple(rejected.shape)} values for {pairs} pairs")
    except Exception as err:  # cut short, edited, unreadable: never used
        logger.warning("the cached reference log-probs in %s are damaged (%s); computing them again", folder,
                       str(err).splitlines()[0] if str(err) else type(err).__name__)
        return False
    return chosen, rejected


def _write_cache(folder: Path, chosen: torch.Tensor, rejected: torch.Tensor, description: dict, replace: bool = False) -> None:
    """The cache folder written beside its name and renamed into place; `replace`: over a damaged one."""
    from safetensors.torch import save_file

    partial = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        save_file({"chosen": chosen.contiguous(), "rejected": rejected.contiguous()}, str(partial / CACHE_FILE))
        record = {**description, "file": _file_record(partial / CACHE_FILE)}
        (partial / KEY_FILE).write_text(json.dumps(record, indent=2, default=str))
        if replace and folder.exists():
            damaged = folder.with_name(f".{folder.name}.{os.getpid()}.damaged")
            folder.rename(damaged)
            shutil.rmtree(damaged, ignore_errors=True)
        partial.rename(folder)
    except OSError:  # another process wrote the same key first, or the disk is full: no cache, the values stand
        logger.warning("%s: the reference log-probs could not be cached", folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def with_reference_logps(model, dataset, collator, batch_size: int, chunk_size: int = 0, device=None,
                         autocast=contextlib.nullcontext, precision: str = "no", split: str = "train"):
    """`dataset` with the columns `ref_chosen_logps` and `ref_rejected_logps`, from the cache when it holds them."""
    if dataset is None or REF_COLUMNS[0] in dataset.column_names:
        return dataset
    identity = model_identity(model)
    folder = None
    if identity is None:
        logger.warning("%s: the reference model has no folder or hub name, so its log-probs are computed but not cached", split)
    else:
        description = {"model": identity, "mixed_precision": precision, "pairs": len(dataset), "token_ids_sha256": dataset_digest(dataset)}
        key = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:24]
        folder = cache_home() / "ref-logps" / key
        cached = _read_cache(folder, len(dataset))
        if cached:
            logger.warning("%s: reusing the cached reference log-probs of %d pairs from %s", split, len(dataset), folder)
            return _attach(dataset, *cached)
    start = time.perf_counter()
    chosen, rejected = compute_reference_logps(model, dataset, collator, batch_size, chunk_size, device, autocast)
    if folder is not None:
        _write_cache(folder, chosen, rejected, description, replace=cached is False)
    logger.warning(
        "%s: computed the reference log-probs of %d pairs in %.1f s%s",
        split, len(dataset), time.perf_counter() - start, f", cached in {folder}" if folder else "",
    )
    return _attach(dataset, chosen, rejected)


def _attach(dataset, chosen: torch.Tensor, rejected: torch.Tensor):
    from datasets import Value

    dataset = dataset.add_column(REF_COLUMNS[0], chosen.tolist(), feature=Value("float32"))
    return dataset.add_column(REF_COLUMNS[1], rejected.tolist(), feature=Value("float32"))
