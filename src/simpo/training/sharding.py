"""What the trainer needs of a model whose parameters DeepSpeed ZeRO-3 or FSDP2 shards across processes.

- `whole_model(model)`: before the DeepSpeed engine exists (the reference pass runs in the trainer's
  constructor), a ZeRO-3 model loaded under `zero3_init_flag` holds only empty placeholders and
  this process's partition of each weight; no hook gathers them yet. The context gathers every
  weight whole on every process (a collective), and partitions them again at its end.
- `local_values(weight)`: this process's share of a weight, the values it really holds: the ZeRO-3
  partition (`ds_tensor`; the parameter's own tensor is an empty placeholder outside its module's
  forward), the local shard of an FSDP2 DTensor, or the weight itself.
- `check_fsdp_active(trainer)`: accelerate 1.15 starts FSDP only on accelerators (GPU, XPU, NPU,
  ...); on the CPU an FSDP config silently becomes DDP. Said in one line, not left silent.
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

logger = logging.getLogger("simpo")


def is_zero3(model) -> bool:
    """Whether DeepSpeed ZeRO-3 partitions `model`'s parameters."""
    return any(hasattr(weight, "ds_id") for weight in model.parameters())


def whole_model(model):
    """A context in which every ZeRO-3-partitioned weight of `model` is whole on every process (a
    collective: every process enters it together); a no-op for any other model."""
    if not is_zero3(model):
        return contextlib.nullcontext()
    from deepspeed.runtime.zero.partition_parameters import GatheredParameters

    return GatheredParameters(list(model.parameters()))


def local_values(weight: torch.Tensor) -> torch.Tensor:
    """The values of `weight` this process holds: its ZeRO-3 partition, its FSDP2 shard, or all of it."""
    if hasattr(weight, "ds_tensor"):
        return weight.ds_tensor
    if hasattr(weight, "to_local"):  # a DTensor
        return weight.to_local()
    return weight


def check_fsdp_active(trainer) -> None:
    """Warn when the launcher asked for FSDP (ACCELERATE_USE_FSDP) and accelerate did not start it."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not trainer.is_fsdp_enabled:
        logger.warning("the accelerate config asks for FSDP, but accelerate runs %s here (it starts FSDP on GPUs and other "
                       "accelerators only): every process holds the whole model", trainer.accelerator.distributed_type)
