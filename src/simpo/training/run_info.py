"""`run_info.json`: what only the training run itself can record about itself, for the model card.

The machine (the GPU's name, or the CPU's model and torch's reading of its instruction set), the
torch and transformers versions, the number of processes, whether bf16 autocast was on, the seconds
`simpo train` took, which dataset sources were local folders or files when it ran, and the values
the loss and training keys the card lists had, defaults resolved.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

RUN_INFO = "run_info.json"
# Training keys the card lists after the loss's own (`LOSSES[loss_type].keys`).
TRAINING_KEYS = (
    "learning_rate", "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "max_length", "max_prompt_length", "truncation_mode", "optim", "weight_decay",
    "max_grad_norm", "bf16", "activation_checkpointing", "seed",
)
SFT_KEYS = ("max_seq_length", "packing")  # `simpo sft`'s own


def hardware() -> str:
    """The GPU's name, or the CPU's model and torch's reading of its instruction set."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"{model} (torch CPU capability {torch.backends.cpu.get_cpu_capability()}, {threads} thread{'s' * (threads != 1)})"


def write_run_info(output_dir: str | Path, args, seconds: float, sources: list[str]) -> Path:
    """Write `run_info.json` for a run of training arguments `args` that took `seconds`."""
    import torch
    import transformers

    from .losses import LOSSES

    loss_type = getattr(args, "loss_type", "sft")  # `simpo sft` has no preference loss
    keys = [*(LOSSES[loss_type].keys if loss_type in LOSSES else ()), *TRAINING_KEYS, *SFT_KEYS]
    info = {
        "hardware": hardware(), "torch": torch.__version__, "transformers": transformers.__version__,
        "processes": args.world_size, "bf16": bool(args.bf16), "seconds": round(seconds, 1),
        "local_datasets": [source for source in sources if Path(source).exists()],
        "hyperparameters": {"loss_type": loss_type, **{key: getattr(args, key) for key in keys if hasattr(args, key)}},
    }
    path = Path(output_dir) / RUN_INFO
    path.write_text(json.dumps(info, indent=2, default=str))
    return path
