"""The machine a benchmark ran on, in words: every table names it."""

from __future__ import annotations

import platform

import torch


def describe() -> str:
    """The GPU's name, or the CPU's model, torch's capability reading and the threads torch uses."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model = platform.processor() or "unknown CPU"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, torch capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"
