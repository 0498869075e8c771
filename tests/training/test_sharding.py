"""Sharded training on two CPU processes: DeepSpeed ZeRO-3 (its CPU accelerator, gloo) trains DPO with
a cached reference as one process with gradient accumulation 2 does, and saves a model plain
transformers loads; ZeRO-3's and FSDP2's weight checks read every process's share; under FSDP2 the
chunked head and the leaner layers give one process's log-probs and gradients. The shipped configs.

One launch of two processes (`sharded_processes.py`) under the shipped ZeRO-3 config serves every
test of the module. FSDP through accelerate does not run on a CPU (accelerate 1.15 starts it on
accelerators only; see docs/scaling.md), so FSDP2 is tested as torch's `fully_shard` directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, load_causal_lm, pair_features, recipe_values, write_jsonl
from transformers import AutoTokenizer

from simpo.cli import main
from simpo.data.bundled import make_rows

CONFIGS = REPO / "recipes" / "accelerate"
STEP_KEYS = ("loss", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected",
             "logits/chosen", "logits/rejected")
BAD = "model.layers.1.mlp.up_proj.weight"


def _recipe(work: Path, name: str, folder: Path, **extra) -> Path:
    # 8 pairs, 2 epochs: 4 optimizer steps of 4 pairs, the second epoch in another order; DPO with
    # its reference log-probs cached; a clipping norm below the gradients' (about 0.6).
    values = recipe_values(folder, work / "pairs", work / "runs" / name, per_device_train_batch_size=2, per_device_eval_batch_size=2,
                           num_train_epochs=2, loss_type="dpo", beta=0.5, precompute_ref_logps=True, do_eval=True, max_grad_norm=0.3,
                           **extra)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def sharded(tiny_model_dir, tmp_path_factory):
    """The two processes' findings under ZeRO-3, then one process's run with accumulation 2 (its own reference cache).
    The tiny Llama with its head untied from the embeddings, as Llama-3-8B's and Mistral's are."""
    work = tmp_path_factory.mktemp("sharded")
    folder = work / "untied"
    load_causal_lm(tiny_model_dir("llama"), untie=True).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir("llama")).save_pretrained(folder)
    write_jsonl(work / "pairs" / "train.jsonl", make_rows(8, seed=5))
    write_jsonl(work / "pairs" / "test.jsonl", make_rows(4, seed=6))
    _recipe(work, "dpo", folder)
    single = _recipe(work, "dpo-1", folder, gradient_accumulation_steps=2)
    # The shipped config, on 2 CPU processes in fp32.
    config = {**yaml.safe_load((CONFIGS / "deepspeed_zero3.yaml").read_text()), "num_processes": 2, "mixed_precision": "no"}
    (work / "zero3.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SIMPO_HOME": str(work / "simpo-home")}
    launch = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(work / "zero3.yaml"),
                             str(Path(__file__).with_name("sharded_processes.py")), str(work), str(folder)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert launch.returncode == 0, launch.stderr[-3000:]
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMPO_HOME", str(work / "simpo-home-1"))
        torch.set_num_threads(1)
        try:
            assert main(["train", str(single)]) == 0
        finally:
            torch.set_num_threads(threads)
    return work, folder, [torch.load(work / f"process-{rank}.pt") for rank in (0, 1)]


def _log(run: Path) -> list[dict]:
    return json.loads((run / "trainer_state.json").read_text())["log_history"]


def test_zero3_trains_as_one_process_with_accumulation_2(sharded):
    work, _, processes = sharded
    assert [process["status"] for process in processes] == [0, 0]
    # The chunked head ran as the head module's forward, on the weight DeepSpeed gathered for it: the
    # module returned no position's logits (the module-per-chunk path returns each chunk's).
    assert [(process["head_calls"] > 0, process["head_rows"]) for process in processes] == [(True, 0), (True, 0)]
    zero3, single = _log(work / "runs" / "dpo"), _log(work / "runs" / "dpo-1")
    steps = [[entry for entry in log if "loss" in entry] for log in (zero3, single)]
    assert [entry["step"] for entry in steps[0]] == [entry["step"] for entry in steps[1]] == [1, 2, 3, 4]
    for ours, theirs in zip(*steps):
        # The gradient norm is summed over partitions, not whole tensors: the clipped update differs in the last bits.
        assert ours["grad_norm"] > 0.3 and ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-5)
        for key in STEP_KEYS:  # a margin is the difference of two rewards: their rounding, absolute
            # rel 3e-5: on an Intel Xeon (AVX512, fp32) rewards/rejected differed by 1.5e-5 relative (AMD Zen 4: within 1e-5)
            assert ours[key] == pytest.approx(theirs[key], rel=3e-5, abs=1e-5 if key == "rewards/margins" else 1e-6), key
    # The step-0 evaluation (run inside train() under DeepSpeed) and the last, over both processes' pairs.
    # The weights differ in their last bits (see below), so the metrics do too; a margin is the
    # difference of two rewards of about 1.6, so it gets an absolute tolerance.
    evals = [[entry for entry in log if "eval_loss" in entry] for log in (zero3, single)]
    assert [entry["step"] for entry in evals[0]] == [entry["step"] for entry in evals[1]] == [0, 4]
    assert (evals[0][0]["eval_loss"], evals[0][0]["eval_rewards/margins"]) == (pytest.approx(0.6931472), 0.0)  # reference = initial policy
    for ours, theirs in zip(*evals):
        for key in ("eval_loss", "eval_rewards/chosen", "eval_logps/chosen", "eval_logps/rejected"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key
        assert ours["eval_rewards/margins"] == pytest.approx(theirs["eval_rewards/margins"], abs=1e-4)
    # The reference pass over the partitioned model (gathered whole) gives one process's log-probs.
    caches = [sorted((work / home / "ref-logps").glob("*/logps.safetensors")) for home in ("simpo-home", "simpo-home-1")]
    assert len(caches[0]) == len(caches[1]) == 2 and [path.parent.name for path in caches[0]] == [path.parent.name for path in caches[1]]
    from safetensors.torch import load_file

    for ours, theirs in zip(*caches):
        assert torch.allclose(load_file(ours)["chosen"], load_file(theirs)["chosen"], rtol=0, atol=1e-4)


def test_zero3_saves_a_whole_model_that_plain_transformers_loads(sharded):
    from transformers import AutoModelForCausalLM

    work, _, _ = sharded
    zero3 = AutoModelForCausalLM.from_pretrained(work / "runs" / "dpo", dtype=torch.float32)
    single = AutoModelForCausalLM.from_pretrained(work / "runs" / "dpo-1", dtype=torch.float32)
    theirs = dict(single.named_parameters())
    assert [name for name, _ in zero3.named_parameters()] == list(theirs)
    # Every step is clipped, and the clipping coefficients differ in their last bits (DeepSpeed sums the
    # norm over partitions); Adam turns that into up to 3e-5 on the few head weights whose gradients
    # are of the order of its eps (measured: 1e-5 here; 3.3e-5 on 28 of 1.5M entries with 16 pairs), and
    # 3e-7 on any other weight.
    for name, weight in zero3.named_parameters():
        difference = (weight - theirs[name]).abs()
        assert weight.shape == theirs[name].shape, name
        if name == "lm_head.weight":
            assert difference.max() < 1e-4 and (difference > 1e-5).sum() < 100, name
        else:
            assert difference.max() < 1e-5, name
    initial = AutoModelForCausalLM.from_pretrained(yaml.safe_load((work / "dpo.yaml").read_text())["model_name_or_path"])
    assert (dict(zero3.named_parameters())[BAD] - initial.state_dict()[BAD]).abs().max() > 1e-3  # it was trained


@pytest.mark.parametrize("engine", ["zero3", "fsdp2"])
def test_weight_check_reads_every_process_share(sharded, engine):
    _, folder, processes = sharded
    if engine == "zero3":  # the parameter itself is an empty placeholder outside its module's forward
        assert processes[0]["zero3_placeholder_numel"] == 0
    said = [(process[f"{engine}_before"], process[f"{engine}_after"]) for process in processes]
    assert [before for before, _ in said] == ["finite", "finite"]
    # Process 1 alone holds the infinite value; both processes stop, with the same words.
    assert said[0][1] == said[1][1] and said[0][1].startswith(f"step 7: the update made 1 weight tensors non-finite ({BAD} first)")


def test_fsdp2_chunked_head_and_gradients_are_one_process_s(sharded):
    from transformers import AutoModelForCausalLM

    from simpo.data.collate import PairCollator
    from simpo.ops.attention import use_per_sequence_attention
    from simpo.ops.logprobs import response_logps
    from simpo.ops.recompute import recompute_in_backward

    _, folder, processes = sharded
    # After the root's forward FSDP2 keeps its weights (embeddings and head) whole until its backward:
    # the chunked head's own gradient runs on it.
    assert [process["fsdp2_head_whole_after_forward"] for process in processes] == [True, True]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    recompute_in_backward(model)
    use_per_sequence_attention(model)
    tokenizer, features = pair_features(folder, count=4)
    collate = PairCollator(tokenizer.pad_token_id, padding_free=True, share_prompt=True)
    losses = []
    for rank, process in enumerate(processes):
        scores = response_logps(model, collate(features[2 * rank : 2 * rank + 2]), 16)
        assert torch.allclose(process["fsdp2_sums"], scores.sums.detach(), rtol=1e-6, atol=1e-5)
        losses.append(-(scores.sums / scores.counts).mean())
    (sum(losses) / 2).backward()
    for name, weight in model.named_parameters():
        for process in processes:
            assert torch.allclose(process["fsdp2_grads"][name], weight.grad, rtol=1e-5, atol=1e-7), name


@pytest.mark.parametrize("name", ["deepspeed_zero3", "fsdp"])
def test_shipped_sharded_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert (config.num_processes, config.mixed_precision, config.use_cpu) == (8, "bf16", False)
    if name == "deepspeed_zero3":  # the official SimPO repository's settings
        assert config.distributed_type == DistributedType.DEEPSPEED
        assert config.deepspeed_config == {"zero_stage": 3, "zero3_init_flag": True, "zero3_save_16bit_model": True,
                                           "offload_optimizer_device": "none", "offload_param_device": "none",
                                           "deepspeed_multinode_launcher": "standard"}
    else:
        assert config.distributed_type == DistributedType.FSDP
        assert {key: config.fsdp_config[key] for key in ("fsdp_version", "fsdp_reshard_after_forward", "fsdp_auto_wrap_policy",
                                                          "fsdp_state_dict_type")} == {
            "fsdp_version": 2, "fsdp_reshard_after_forward": True, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "FULL_STATE_DICT"}
