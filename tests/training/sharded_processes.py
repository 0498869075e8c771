"""What `tests/training/test_sharding.py` runs as two processes under `accelerate launch` with a
DeepSpeed ZeRO-3 config (DeepSpeed's CPU accelerator, gloo): `python sharded_processes.py WORK MODEL`.

1. `simpo train WORK/dpo.yaml` (the CLI's `main`, as `accelerate launch -m simpo train` runs it),
   counting the positions whose logits the output head's module returns.
2. ZeRO-3's weight check: a model partitioned by `deepspeed.zero.Init`, one value of one partition
   made infinite on process 1 only; what `NonFiniteGuard.check_weights` says on each process.
3. FSDP2 on the same two processes (torch's `fully_shard` over gloo; accelerate starts FSDP on
   accelerators only): MODEL sharded per decoder layer and at the root, as accelerate's
   TRANSFORMER_BASED_WRAP shards it, with simpo's leaner layers; each process scores its own batch
   with the chunked head, and the loss's gradients are reduced by FSDP2. The sequences' log-probs
   and every weight's whole gradient; then the weight check with one value of process 1's shard
   made infinite.

Each process writes what it found to WORK/process-RANK.pt for the test to judge. Nothing here checks anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # helpers

from helpers import pair_features  # noqa: E402

from simpo.cli import main  # noqa: E402

WORK, MODEL = Path(sys.argv[1]), Path(sys.argv[2])
CHUNK = 16  # response tokens per chunk of the output head: several chunks per batch
BAD = "model.layers.1.mlp.up_proj.weight"  # the weight made non-finite on process 1

# The positions whose logits the output head module returns during the run: none when the chunked head
# runs as the module's forward (it returns log-probs; the model's own head call keeps no position),
# chunks when the module projects each chunk.
vocab = json.loads((MODEL / "config.json").read_text())["vocab_size"]
head_rows: list[int] = []


def head_call(module, args, output):
    if isinstance(module, torch.nn.Linear) and module.out_features == vocab:
        head_rows.append(output.shape[:-1].numel() if isinstance(output, torch.Tensor) else 0)


hook = torch.nn.modules.module.register_module_forward_hook(head_call)
found: dict = {"status": main(["train", str(WORK / "dpo.yaml")])}
hook.remove()
found["head_calls"], found["head_rows"] = len(head_rows), sum(head_rows)
rank = dist.get_rank()

from accelerate import PartialState  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from transformers.integrations.deepspeed import unset_hf_deepspeed_config  # noqa: E402

from simpo.errors import TrainingError  # noqa: E402
from simpo.training.nonfinite import NonFiniteGuard  # noqa: E402


def weight_check(model) -> str:
    """What the weight check says: 'finite', or its error."""
    try:
        NonFiniteGuard("stop", str(WORK / "no-run"), PartialState()).check_weights(model, step=7)
    except TrainingError as error:
        return str(error)
    return "finite"


# 2. ZeRO-3: each process holds a partition of each weight, and empty placeholders. Models load
# plainly from here on (the training run left transformers set to partition them as they load).
import deepspeed  # noqa: E402

unset_hf_deepspeed_config()

partitioned = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
deepspeed.zero.Init(module=partitioned, config_dict_or_path={"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}})
found["zero3_placeholder_numel"] = dict(partitioned.named_parameters())[BAD].numel()
found["zero3_before"] = weight_check(partitioned)
if rank == 1:
    dict(partitioned.named_parameters())[BAD].ds_tensor.data[0] = float("inf")
found["zero3_after"] = weight_check(partitioned)
del partitioned

# 3. FSDP2.
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402

from simpo.data.collate import PairCollator  # noqa: E402
from simpo.ops.attention import use_per_sequence_attention  # noqa: E402
from simpo.ops.logprobs import _plain_linear, response_logps  # noqa: E402
from simpo.ops.recompute import recompute_in_backward  # noqa: E402

model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
recompute_in_backward(model)
use_per_sequence_attention(model)
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
for layer in model.model.layers:
    fully_shard(layer, mesh=mesh)
fully_shard(model, mesh=mesh)
tokenizer, features = pair_features(MODEL, count=4)
batch = PairCollator(tokenizer.pad_token_id, padding_free=True, share_prompt=True)(features[2 * rank : 2 * rank + 2])
scores = response_logps(model, batch, CHUNK)
found["fsdp2_head_whole_after_forward"] = _plain_linear(model.get_output_embeddings())
(-(scores.sums / scores.counts).mean()).backward()  # FSDP2 averages the two processes' gradients
found["fsdp2_sums"] = scores.sums.detach()
found["fsdp2_grads"] = {name: weight.grad.full_tensor() for name, weight in model.named_parameters()}
model.reshard()
found["fsdp2_before"] = weight_check(model)
if rank == 1:
    dict(model.named_parameters())[BAD].to_local().data[0, 0] = float("inf")
found["fsdp2_after"] = weight_check(model)

torch.save(found, WORK / f"process-{rank}.pt")
