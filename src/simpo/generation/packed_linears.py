"""Linear layers with their weights laid out once for oneDNN, for bf16 decoding on the CPU.

A bf16 `F.linear` on the CPU goes to oneDNN's matmul with the weight as torch holds it, which the
kernel repacks into its own blocked layout on every call: at decode shapes (tens to hundreds of
rows against SmolLM2's 30 layers of weights) that repacking is a good part of the step. Packed once
with `torch.ops.mkldnn._reorder_linear_weight` (what torch.compile's CPU backend does for frozen
weights), the same kernel reads them as they are: a decode step of SmolLM2 took 0.86x the time at
40 rows and 0.89x at 200 (docs/benchmarks.md), with the same logits bit for bit (tested).

Used around a generation run (`generation.engine`) where the weights are bf16 on a CPU whose torch
has oneDNN; elsewhere, and if the private operators are missing, linears stay as they are. The
packed copies hold as much memory as the linear weights (tied embeddings: the head's once more).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def _packable(model) -> bool:
    """bf16 weights on a CPU whose oneDNN packs them: it needs AVX512 (BW, VL, DQ) or AVX-NE-CONVERT,
    which torch's capability AVX2 (or less) rules out."""
    ops = torch.ops.mkldnn
    return (model.device.type == "cpu" and model.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2")
            and hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise"))


def _packed_forward(weight: torch.Tensor, bias: torch.Tensor | None):
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, bias, "none", [], "")
        return out.reshape(*x.shape[:-1], out.shape[-1])

    return forward


@contextlib.contextmanager
def packed_linears(model, rows: int) -> Iterator[None]:
    """Within the block, the model's bf16 `nn.Linear`s multiply by weights packed once for `rows`
    rows at a time (a hint for the layout); they are restored after. Nothing changes where
    packing does not apply."""
    linears = [module for module in model.modules() if type(module) is nn.Linear and module.weight.dtype == torch.bfloat16]
    if not linears or not _packable(model):
        yield
        return
    try:
        with torch.no_grad():
            forwards = {module: _packed_forward(torch.ops.mkldnn._reorder_linear_weight(module.weight, rows), module.bias)
                        for module in linears}
    except RuntimeError:  # a torch without oneDNN's bf16 linear
        yield
        return
    previous = {module: module.__dict__.get("forward") for module in linears}  # a forward set on the module itself (hooks)
    for module, forward in forwards.items():
        module.forward = forward
    try:
        yield
    finally:
        for module, forward in previous.items():
            if forward is None:
                del module.forward
            else:
                module.forward = forward
