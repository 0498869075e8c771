"""Peak memory (and time) of the output head's log-probs, forward and backward, by path.

    python benchmarks/sharded_head.py                       # Llama-3's vocabulary, 2,048 scored positions
    python benchmarks/sharded_head.py --vocab 256000 --hidden 3584 --tokens 8192 --dtype bfloat16

Three ways to turn the final hidden states of T scored positions into their log-probs, each in a
fresh process on the same tensors (hidden states [T, h] and a head weight [V, h], both requiring
gradients):

- `full`: the logits of every position at once, as the model's own head and `logps_chunk_size: 0`
  (the official trainer) compute them: [T, V] logits, their fp32 log-softmax, their gradients.
- `chunked`: `ops.logprobs._LinearHeadLogps`, `logps_chunk_size` positions at a time with the
  head's gradient written out; the path of a plain head, and of a DeepSpeed ZeRO-3 head (the same
  function on the gathered weight) and an FSDP2 head held by the root unit.
- `module`: the head module called on each chunk, each chunk checkpointed
  (`ops.logprobs.head_module_logps`); the path of a head module that is not a plain linear layer (a
  LoRA-wrapped head, or an FSDP2 head in a unit of its own), and of a ZeRO-3 head before this
  project gathered it.

Peak: the live heap during the forward and backward passes (glibc `mallinfo2`, sampled every
millisecond; CUDA's allocator count on a GPU), less the live heap before, the inputs and the
weight already allocated. The weight's gradient ([V, h]) is part of every path's peak. Memory, not
time, is reliable on a busy machine: the time is one pass, no warm-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402
from throughput import PeakMemory  # noqa: E402

PATHS = ("full", "chunked", "module")


def head_logps(path: str, head: torch.nn.Linear, hidden: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
    from simpo.ops.logprobs import _LinearHeadLogps, head_module_logps

    if path == "full":
        logits = head(hidden)
        return torch.log_softmax(logits.float(), dim=-1)[torch.arange(hidden.shape[0], device=hidden.device), targets]
    if path == "chunked":
        return _LinearHeadLogps.apply(hidden, head.weight, targets, None, chunk)[0]
    return head_module_logps(head, None, hidden, targets, chunk)[0]


def worker(options) -> dict:
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, options.dtype)
    head = torch.nn.Linear(options.hidden, options.vocab, bias=False, device=device, dtype=dtype)
    hidden = torch.randn(options.tokens, options.hidden, device=device, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, options.vocab, (options.tokens,), device=device)
    before = torch.cuda.memory_allocated() if device == "cuda" else None
    with PeakMemory() as idle:
        pass
    start = time.perf_counter()
    with PeakMemory() as memory:
        head_logps(options.path, head, hidden, targets, options.chunk).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = memory.peak - (before if before is not None else idle.peak)
    return {"path": options.path, "peak_mib": peak / 2**20, "seconds": seconds,
            "weight_grad_mib": head.weight.grad.nbytes / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=256, help="logps_chunk_size")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)  # one path, in this process
    options = parser.parse_args()
    if options.path:
        print(json.dumps(worker(options)))
        return
    size = {"float32": 4, "bfloat16": 2}[options.dtype]
    print(f"machine: {describe()}")
    print(f"V {options.vocab:,}, h {options.hidden:,}, T {options.tokens:,} positions, chunk {options.chunk}, {options.dtype}")
    print(f"[T, V] logits in fp32: {options.tokens * options.vocab * 4 / 2**20:,.0f} MiB; one chunk's: "
          f"{min(options.chunk, options.tokens) * options.vocab * 4 / 2**20:,.0f} MiB; the weight's gradient: "
          f"{options.vocab * options.hidden * size / 2**20:,.0f} MiB")
    print(f"{'path':<10}{'peak MiB':>12}{'seconds':>10}")
    for path in PATHS:
        command = [sys.executable, __file__, *sys.argv[1:], "--path", path]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"{path:<10}{result['peak_mib']:>12,.0f}{result['seconds']:>10.2f}")


if __name__ == "__main__":
    main()
