"""What `tests/training/test_launch.py` runs as two gloo processes: `python two_processes.py WORK`.

Each process trains WORK/simpo.yaml and then WORK/dpo.yaml through `simpo train` (the CLI's `main`,
as `accelerate launch -m simpo train` runs it), then computes KTO's loss on ratios of its own, and
draws two epochs of a `group_by_length` training order as the trainer deals it out. It records what
it opened for writing or made under WORK/runs and WORK/simpo-home (Python's audit events: open,
mkdir, rename, remove), the `simpo` log records it emitted, and writes all of it to
WORK/process-RANK.json for the test to judge. Nothing here checks anything.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

WORK = Path(sys.argv[1])
ROOTS = (str(WORK / "runs"), str(WORK / "simpo-home"))
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
written: list[str] = []


def audit(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITING)
        paths = [path] if writes else []
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree"):
        paths = [args[0]]
    elif event in ("os.rename", "os.replace"):
        paths = [args[0], args[1]]
    else:
        return
    for path in paths:
        if isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(ROOTS):
            written.append(f"{event} {os.fspath(path)}")


sys.addaudithook(audit)
records: list[str] = []


class Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        records.append(record.getMessage())


logging.getLogger("simpo").addHandler(Keep())

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from simpo.cli import main  # noqa: E402

statuses = [main(["train", str(WORK / "simpo.yaml")]), main(["train", str(WORK / "dpo.yaml")])]
rank = dist.get_rank()

# KTO on micro-batches of unequal size (3 and 5 pairs), each process's ratios its own.
from simpo.training.losses import kto_pair_loss  # noqa: E402

generator = torch.Generator().manual_seed(rank)
pairs = 3 + 2 * rank
chosen = torch.randn(pairs, generator=generator, dtype=torch.float64) + 0.5
rejected = torch.randn(pairs, generator=generator, dtype=torch.float64) + 0.3
chosen.requires_grad_(True)
kto = kto_pair_loss(chosen, rejected, beta=0.7, desirable_weight=1.3, undesirable_weight=0.8)
kto.sum().backward()

# Two epochs of the group_by_length order, each process's batches as the trainer receives them. Between
# the epochs process 1 draws from torch's global random state, as dropout does on micro-batches of
# another size than process 0's.
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from simpo.config.recipe import load_recipe  # noqa: E402
from simpo.data.collate import ROW_IDS  # noqa: E402
from simpo.data.dataset import build_pair_datasets  # noqa: E402
from simpo.data.encode import PairEncoder  # noqa: E402
from simpo.training.trainer import SimPOTrainer  # noqa: E402

recipe = load_recipe(str(WORK / "simpo.yaml"), ["--train_sampling_strategy", "group_by_length", "--output_dir", str(WORK / "sampler")])
tokenizer = AutoTokenizer.from_pretrained(recipe.model.model_name_or_path)
train_set, _ = build_pair_datasets(recipe.data, PairEncoder.for_recipe(tokenizer, recipe.training, recipe.model.model_name_or_path))
model = AutoModelForCausalLM.from_pretrained(recipe.model.model_name_or_path, dtype=torch.float32)
loader = SimPOTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=train_set).get_train_dataloader()
epochs = []
for epoch in range(2):
    loader.set_epoch(epoch)
    epochs.append([[row for _, row in batch[ROW_IDS]] for batch in loader])
    if rank == 1:
        torch.rand(1000)

result = {
    "rank": rank, "world_size": dist.get_world_size(), "statuses": statuses, "written": written, "records": records,
    "kto": {"chosen": chosen.tolist(), "rejected": rejected.tolist(), "losses": kto.tolist(), "chosen_grad": chosen.grad.tolist()},
    "group_by_length": epochs, "lengths": list(train_set["length"]), "rows": list(train_set["row"]),
}
(WORK / f"process-{rank}.json").write_text(json.dumps(result))
