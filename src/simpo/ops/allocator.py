"""glibc's allocator set to keep freed memory in the process, for training on the CPU.

By default glibc gives every block over its mmap threshold (at most 32 MB) back to the kernel when
it is freed, and trims the top of its heap, so a training step's large temporaries (logits chunks,
gradients, activations) come back as fresh pages that fault on first touch, a noticeable part of a
CPU step. With mmap off and trimming at 2 GB, freed blocks are reused, and a step faults only where
the heap grows past its earlier peak (figures in docs/performance.md).

Nothing is changed where the user set glibc's own variables (`GLIBC_TUNABLES`, `MALLOC_*_`), or
where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes: free heap top is kept up to 2 GB


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed memory instead of returning it; whether it was set."""
    if "GLIBC_TUNABLES" in os.environ or any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
