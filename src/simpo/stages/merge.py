"""`simpo merge RUN_DIR`: a LoRA run's adapter merged into its base, saved as a full model folder.

RUN_DIR is a training `output_dir` trained with `use_peft: true` (or a pipeline run folder whose
`model/` is one): its `adapter_config.json` names the base model. The base loads in float32, the
adapter is merged into it (`merge_and_unload`), and the model is saved in the base's own dtype with
the run's tokenizer and generation config (its stop tokens) to `--output` (default RUN_DIR/merged),
written beside that name and renamed when whole (a save that fails, a full disk included, leaves
neither). Every command that takes a model folder also takes the adapter folder itself (merged in
memory as it loads); the merged folder is for what needs a full model: vLLM, other tools,
publishing.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from ..config.recipe import ModelConfig
from ..errors import OptionParser, RecipeError, option_rows
from ..models.loading import ADAPTER_CONFIG, adapter_base, load_model, load_model_config, load_tokenizer

logger = logging.getLogger("simpo")

OPTIONS = (  # (flag, argparse settings): the parser and `simpo merge --help` are both made from these
    ("--output", {"type": str, "default": None, "help": "Where the full model goes (a new folder); unset: RUN_DIR/merged"}),
)
OPTION_ROWS = option_rows(OPTIONS)


def parse_options(tokens: list[str]) -> argparse.Namespace:
    return OptionParser.of("simpo merge", "run_dir", OPTIONS).parse_args(tokens)


def adapter_folder(run_dir: Path) -> Path:
    """The folder holding the adapter: RUN_DIR, or a pipeline run's RUN_DIR/model; a RecipeError otherwise."""
    for folder in (run_dir, run_dir / "model"):
        if (folder / ADAPTER_CONFIG).is_file():
            return folder
    if not run_dir.is_dir():
        raise RecipeError(f"{run_dir}: no such folder; give a training output_dir trained with use_peft: true")
    if (run_dir / "config.json").is_file() or (run_dir / "model" / "config.json").is_file():
        raise RecipeError(f"{run_dir} holds a full model, not a LoRA adapter (no {ADAPTER_CONFIG}): it needs no merge; "
                          "use the folder as it is")
    raise RecipeError(f"{run_dir} is not a LoRA run folder (no {ADAPTER_CONFIG}); give the output_dir of a run trained with use_peft: true")


def merge_adapter(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Merge the adapter of `run_dir` into its base; the full model folder written."""
    import torch

    folder = adapter_folder(Path(run_dir))
    target = Path(output) if output is not None else folder / "merged"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RecipeError(f"{target} already exists; remove it, or name another folder with --output")
    config = ModelConfig(model_name_or_path=str(folder))
    base = adapter_base(str(folder))  # a missing base folder is named here, before anything loads
    dtype = load_model_config(config).dtype or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    tokenizer = load_tokenizer(config)
    model = load_model(config, "float32").to(dtype)  # merged in float32, saved in the base's dtype
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:  # the folder appears whole or not at all: a save cut short (a full disk) leaves nothing behind
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        if target.exists():
            target.rmdir()  # an empty folder
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("merge: the adapter of %s merged into %s (%s), saved in %s", folder, base, str(dtype).removeprefix("torch."), target)
    return target


def run_merge(tokens: list[str]) -> str:
    options = parse_options(tokens)
    return str(merge_adapter(options.run_dir, options.output))
