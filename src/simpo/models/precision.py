"""The dtype this machine computes in: `auto` means bf16 where the hardware has native bf16, else fp32.

On CPUs without native bf16 (AVX2 only: most laptops and many cloud CPUs) oneDNN emulates bf16
matmuls at a small fraction of the fp32 rate, so a bf16 default there makes every stage many times
slower. Native bf16 on the CPU: x86 with AVX512-BF16 or AMX-BF16 that oneDNN may use (it honours
`ONEDNN_MAX_CPU_ISA`), or an ARM CPU with the bf16 extension. torch's `get_cpu_capability()` alone
does not tell: it reports `AVX512` for some CPUs with AVX512-BF16. On CUDA: bf16 where the GPU
supports it.
"""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
from pathlib import Path

import torch

logger = logging.getLogger("simpo")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 `flags`, ARM `Features`); empty where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@functools.cache
def native_bf16(device: str = "cpu") -> tuple[bool, str]:
    """Whether `device` ("cpu" or "cuda") computes bf16 natively, and why, in words."""
    if device == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return supported, f"the GPU {'supports' if supported else 'does not support'} bf16"
    capability = torch.backends.cpu.get_cpu_capability()
    flags = _cpu_flags()
    if platform.machine().lower() in ("arm64", "aarch64"):
        native = "bf16" in flags or _darwin_feature("hw.optional.arm.FEAT_BF16")
        return native, f"ARM CPU {'with' if native else 'without'} the bf16 extension"
    hardware = capability in ("AVX512_BF16", "AMX") or bool(flags & {"avx512_bf16", "amx_bf16"})
    if hardware and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return True, f"the CPU has native bf16 (torch capability {capability}, AVX512-BF16 or AMX)"
    if hardware:
        return False, f"the CPU has AVX512-BF16 but oneDNN is limited below it (ONEDNN_MAX_CPU_ISA; torch capability {capability})"
    return False, f"the CPU has no native bf16 (torch capability {capability}): bf16 matmuls run many times slower than fp32 there"


def _darwin_feature(name: str) -> bool:
    """A CPU feature macOS reports through sysctl (no /proc/cpuinfo there)."""
    if platform.system() != "Darwin":
        return False
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip() == "1"
    except (OSError, subprocess.SubprocessError):
        return False


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


_announced: set[str] = set()


def _say_once(level: int, message: str) -> None:
    """Log a dtype decision once per process, however many stages resolve the same setting."""
    if message not in _announced:
        _announced.add(message)
        logger.log(level, message)


def resolve_dtype(name: str | None, key: str = "dtype") -> str:
    """The dtype name a setting stands for: `auto` -> bfloat16 or float32 for this machine, None ->
    float32; an explicit bfloat16 on a CPU without native bf16 is kept, with a warning."""
    device = _device()
    native, reason = native_bf16(device)
    if name == "auto":
        chosen = "bfloat16" if native else "float32"
        _say_once(logging.INFO, f"{key} auto -> {chosen}: {reason}")
        return chosen
    if name == "bfloat16" and not native and device == "cpu":
        _say_once(logging.WARNING, f"{key} bfloat16 on this machine will be many times slower than float32: {reason}; "
                                   f"set {key}: auto (or float32) to switch")
    return name or "float32"


def resolve_bf16(value) -> bool:
    """Training's mixed precision: `auto` -> bf16 autocast where the machine computes it natively."""
    device = _device()
    native, reason = native_bf16(device)
    if value == "auto":
        _say_once(logging.INFO, f"bf16 auto -> {'true' if native else 'false'}: {reason}")
        return native
    if value is True and not native and device == "cpu":
        _say_once(logging.WARNING, f"bf16: true on this machine makes training many times slower: {reason}; "
                                   "set bf16: auto (or false) to switch")
    return value
