"""`simpo plan` against what a CPU run of the same recipe measures.

    python benchmarks/plan_check.py                     # every case
    python benchmarks/plan_check.py smollm2-fp32        # some of them

Each case writes a recipe (a recipe of `recipes/` with a few keys changed, and pairs whose both
responses run to `max_length`: the plan's worst case), asks `simpo plan` for one device
(`--gpus 1`), then trains that recipe for 2 steps in a fresh process with `SimPOTrainer` and measures:

- model states: the bytes of the weights, the gradients (before the optimizer step) and the
  optimizer's state, summed from the tensors; against the plan's lines for them;
- kept activations: what autograd keeps at the end of one forward pass of a training batch (saved-
  tensor hooks, each storage once, parameters left out), against the plan's lines for what the
  forward pass keeps (every layer, or the checkpoints; the final norm and the head's input;
  autocast's weight copies), that is the backward lines without the recomputed layer and the head's
  chunk, which exist during the backward pass only;
- peak: the live heap (glibc mallinfo2, sampled every millisecond) during training, less the live
  heap before the model was loaded; against the plan's peak less its CUDA line.

On the CPU, eager and bf16 SDPA attention run `ops.blocked_attention`, which keeps no [L, L]
probabilities; the `gemma2-eager` case switches it off so that the model's own eager attention runs,
as on a GPU. Memory, not time: the machine may be busy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STEPS = 2
BASE = {"dataset_splits": ["train"], "max_steps": STEPS, "save_strategy": "no", "eval_strategy": "no", "do_eval": False,
        "report_to": "none", "logging_steps": 1, "disable_tqdm": True, "learning_rate": 1.0e-6, "warmup_ratio": 0.0}
CASES = {  # name: (recipe, changed keys, model), model None: the recipe's
    "smollm2-fp32": ("smollm2-135m-simpo", {"bf16": False, "per_device_train_batch_size": 2, "max_length": 512, "max_prompt_length": 256}, None),
    "smollm2-fp32-ckpt": ("smollm2-135m-simpo", {"bf16": False, "per_device_train_batch_size": 2, "max_length": 512,
                                                 "max_prompt_length": 256, "gradient_checkpointing": True}, None),
    "smollm2-bf16-autocast": ("smollm2-135m-simpo", {"bf16": True, "per_device_train_batch_size": 2, "max_length": 512,
                                                     "max_prompt_length": 256}, None),
    "gemma2-eager": ("gemma-2-9b-it-simpo", {"torch_dtype": "float32", "bf16": False, "per_device_train_batch_size": 1, "max_length": 512,
                                             "max_prompt_length": 256, "optim": "adamw_torch", "gradient_checkpointing": False}, "gemma2"),
    "gemma2-eager-ckpt": ("gemma-2-9b-it-simpo", {"torch_dtype": "float32", "bf16": False, "per_device_train_batch_size": 1, "max_length": 512,
                                                  "max_prompt_length": 256, "optim": "adamw_torch"}, "gemma2"),
}
# A Gemma-2 body small enough for the CPU, with Gemma-2-9B's vocabulary, head size and soft-caps.
GEMMA2 = dict(vocab_size=256000, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, head_dim=256, query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0,
              attn_logit_softcapping=50.0)


def long_rows(count: int) -> list[dict]:
    """Pairs with a one-line prompt and two different responses longer than any max_length here."""
    words = "the quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing matches".split()
    rows = []
    for n in range(count):
        chosen = " ".join(words[(i * 7 + n) % len(words)] for i in range(3000))
        rejected = " ".join(words[(i * 5 + n + 3) % len(words)] for i in range(3000))
        prompt = [{"role": "user", "content": f"Write a long story number {n}."}]
        rows.append({"chosen": prompt + [{"role": "assistant", "content": chosen}],
                     "rejected": prompt + [{"role": "assistant", "content": rejected}]})
    return rows


def write_case(name: str, folder: Path) -> Path:
    """The case's recipe file in `folder` (with its pairs and, for a Gemma-2 shape, its model)."""
    from simpo.config.recipe import read_recipe_file

    recipe_name, changes, model = CASES[name]
    values = read_recipe_file(REPO / "recipes" / f"{recipe_name}.yaml")
    for key in ("chat_template", "hub_model_id", "run_name", "evaluation_strategy", "eval_steps", "preprocessing_num_workers"):
        values.pop(key, None)
    (folder / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in long_rows(2 * STEPS * changes["per_device_train_batch_size"])))
    values.update(BASE, **changes, dataset_mixer={str(folder / "pairs.jsonl"): 1.0}, output_dir=str(folder / "out"))
    if model == "gemma2":
        from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

        from simpo.models.bundled import bundled_model_dir

        torch.manual_seed(0)
        Gemma2ForCausalLM(Gemma2Config(**GEMMA2)).save_pretrained(folder / "model")
        AutoTokenizer.from_pretrained(bundled_model_dir("smollm2-135m-instruct")).save_pretrained(folder / "model")
        values.update(model_name_or_path=str(folder / "model"), tokenization="template")
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def saved_bytes(trainer) -> tuple[int, int]:
    """Bytes autograd keeps at the end of one forward pass of the first training batch (each storage
    once, parameters left out, through `ops.recompute`'s own hook), and the batch's tokens."""
    import simpo.ops.recompute as recompute

    model = trainer.model
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def count(packed):
        if isinstance(packed, torch.Tensor) and packed.untyped_storage().data_ptr() not in params:
            seen[packed.untyped_storage().data_ptr()] = packed.untyped_storage().nbytes()
        return packed

    inner = recompute._pack
    recompute._pack = lambda tensor: count(inner(tensor))
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t), trainer.compute_loss_context_manager():
            loss, _ = trainer.pair_loss(model, batch)
    finally:
        recompute._pack = inner
    del loss
    return sum(seen.values()), int(batch["input_ids"].numel())


def worker(name: str, recipe_path: str) -> dict:
    from throughput import PeakMemory
    from transformers import TrainerCallback

    from simpo.config.recipe import load_recipe
    from simpo.data.dataset import build_pair_datasets
    from simpo.data.encode import PairEncoder
    from simpo.models.loading import load_model, load_tokenizer
    from simpo.ops.allocator import keep_freed_memory
    from simpo.training.trainer import SimPOTrainer

    keep_freed_memory()  # as the simpo command runs
    if CASES[name][2] == "gemma2":
        import simpo.ops.attention as attention

        attention._blocked = lambda *args: False  # the model's own eager attention, as on a GPU
    recipe = load_recipe(recipe_path, [])
    tokenizer = load_tokenizer(recipe.model)
    train, _ = build_pair_datasets(recipe.data, PairEncoder.for_recipe(tokenizer, recipe.training, recipe.model.model_name_or_path))
    states = {}

    class States(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            states["gradients"] = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)

        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            states["optimizer"] = sum(v.nbytes for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))

    with PeakMemory() as before:
        pass
    with PeakMemory() as memory:
        model = load_model(recipe.model)
        for parameter in model.parameters():  # mapped from the safetensors file, outside the heap: into it, as a GPU holds them
            parameter.data = parameter.data.clone()
        trainer = SimPOTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=train, callbacks=[States()])
        trainer.train()
    states["weights"] = sum(p.nbytes for p in {id(p): p for p in model.parameters()}.values())
    kept, tokens = saved_bytes(trainer)
    return {"states": states, "kept": kept, "tokens": tokens, "peak": memory.peak - before.peak}


def plan_figures(recipe_path: Path) -> dict:
    from simpo.stages.plan import make_plan
    from simpo.training.memory import GIB, RUNTIME_GIB

    plan, _ = make_plan([str(recipe_path), "--gpus", "1", "--gpu-memory", "24"])
    by_name = {term.name: term.bytes for term in plan.states + ([plan.built] if plan.built else [])}
    backward_only = ("one layer recomputed", "log-prob head, one chunk", "full logits (logps_chunk_size 0)")
    return {"weights": by_name["weights"], "gradients": by_name["gradients"], "optimizer": by_name.get("optimizer", 0),
            "kept": sum(t.bytes for t in plan.activations if t.name not in backward_only), "tokens": plan.setup.tokens,
            "peak": plan.total - int(RUNTIME_GIB * GIB)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", default=list(CASES))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(worker(*options.worker)))
        return
    print(f"machine: {describe()}; torch {torch.__version__}")
    rows = []
    for name in options.cases:
        with tempfile.TemporaryDirectory() as folder:
            recipe_path = write_case(name, Path(folder))
            planned = plan_figures(recipe_path)
            run = subprocess.run([sys.executable, __file__, "--worker", name, str(recipe_path)], capture_output=True, text=True)
            if run.returncode:
                print(f"{name}: failed\n{run.stderr[-3000:]}")
                continue
            measured = json.loads(run.stdout.strip().splitlines()[-1])
        rows.append((name, planned, measured))
        print(json.dumps({"case": name, "plan": planned, "measured": measured}))
    mib = 2**20
    print("\n| case | tokens, plan / batch | weights + grads + optimizer, plan / measured (MiB) | kept by the forward pass, plan / measured (MiB) | ratio | peak, plan / measured (MiB) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, planned, measured in rows:
        states_plan = planned["weights"] + planned["gradients"] + planned["optimizer"]
        states_measured = sum(measured["states"].get(key, 0) for key in ("weights", "gradients", "optimizer"))
        print(f"| {name} | {planned['tokens']:,} / {measured['tokens']:,} | {states_plan / mib:,.0f} / {states_measured / mib:,.0f} "
              f"| {planned['kept'] / mib:,.0f} / {measured['kept'] / mib:,.0f} | {planned['kept'] / measured['kept']:.2f} "
              f"| {planned['peak'] / mib:,.0f} / {measured['peak'] / mib:,.0f} | {planned['peak'] / measured['peak']:.2f} |")


if __name__ == "__main__":
    main()
