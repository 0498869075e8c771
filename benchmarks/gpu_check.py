"""GPU checks of the simpo code paths (on the CPU too, slowly): run on a machine with CUDA.

    python benchmarks/gpu_check.py correctness   # every layout x chunk size == full logits, values and gradients
    python benchmarks/gpu_check.py train         # SimPOTrainer steps in bf16 on a random SmolLM2-shaped model
    python benchmarks/gpu_check.py bench smollm2 --dtypes bf16   # benchmarks/throughput.py, failures with their stderr

Models are random-weight, built from configs: SmolLM2-135M's shapes (`$SIMPO_HOME/models/
smollm2-135m-instruct/config.json`) and the small-body, 256k-vocabulary, soft-capped Gemma-2 of
benchmarks/throughput.py. The tokenizer is SmolLM2's (its folder holds the tokenizer files; no
weights are needed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WEIGHTS = [0.7, -1.3, 0.4, 2.0, -0.5, 1.1, -0.9, 0.3]  # a generic linear function of the per-sequence sums
LAYOUTS = {"padded": (False, False), "packed": (True, False), "shared": (True, True)}  # padding_free, share_prompt


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def tokenizer_folder() -> Path:
    from simpo.models.bundled import cache_home

    return cache_home() / "models" / "smollm2-135m-instruct"


def build(kind: str, attn: str):
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig.from_pretrained(tokenizer_folder())  # SmolLM2-135M's config.json, weights random
        config._attn_implementation = attn
        return LlamaForCausalLM(config)
    config = Gemma2Config(  # benchmarks/throughput.py's gemma2-256k (final_logit_softcapping 30 by default)
        vocab_size=256000, hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, query_pre_attn_scalar=64, sliding_window=4096, max_position_embeddings=4096,
        pad_token_id=2, eos_token_id=2, bos_token_id=1,
    )
    config._attn_implementation = attn
    return Gemma2ForCausalLM(config)


def features(tokenizer, count=4, seed=9):
    from simpo.data.bundled import make_rows
    from simpo.data.encode import PairEncoder
    from simpo.data.rows import read_pair

    encoder = PairEncoder(tokenizer, max_length=256, max_prompt_length=128)
    feats = [encoder.encode(read_pair(row, "row"), "row") for row in make_rows(count, seed)]
    # Unequal responses both ways round, so that a shared prompt is followed by either one first.
    feats[0]["rejected_ids"] = feats[0]["rejected_ids"] + feats[0]["chosen_ids"][:7]
    feats[1]["chosen_ids"] = feats[1]["chosen_ids"] + feats[1]["rejected_ids"][:5]
    return feats


def full_logits_logps(model, feats):
    """Independent path: each sequence padded on its own row, every position's logits, and the
    response tokens read off the features: position P+j-1 predicts response token j."""
    sequences = [(list(f["prompt_ids"]), list(f[side])) for side in ("chosen_ids", "rejected_ids") for f in feats]
    width = max(len(p) + len(r) for p, r in sequences)
    input_ids = torch.zeros(len(sequences), width, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    rows, columns, tokens = [], [], []
    for row, (prompt, response) in enumerate(sequences):
        input_ids[row, : len(prompt) + len(response)] = torch.tensor(prompt + response)
        attention_mask[row, : len(prompt) + len(response)] = 1
        rows += [row] * len(response)
        columns += [len(prompt) + j - 1 for j in range(len(response))]
        tokens += response
    logits = model(input_ids=input_ids.to(device()), attention_mask=attention_mask.to(device()), use_cache=False).logits
    logps = torch.log_softmax(logits.float(), -1)
    rows_t = torch.tensor(rows, device=device())
    picked = logps[rows_t, torch.tensor(columns, device=device()), torch.tensor(tokens, device=device())]
    sums = torch.zeros(len(sequences), dtype=picked.dtype, device=device()).index_add(0, rows_t, picked)
    return sums, torch.tensor([len(response) for _, response in sequences], device=device())


def grads(model, value):
    model.zero_grad(set_to_none=True)
    value.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def max_rel_grad(got: dict, reference: dict) -> float:
    """The largest |got - reference| over a parameter's gradient, relative to that gradient's own scale."""
    return max(((got[n] - g).abs().max() / g.abs().max().clamp(min=1e-30)).item() for n, g in reference.items())


def correctness(options) -> list[dict]:
    from transformers import AutoTokenizer

    from simpo.data.collate import PairCollator
    from simpo.ops.attention import use_per_sequence_attention
    from simpo.ops.logprobs import response_logps

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder())
    feats = features(tokenizer)
    weights = torch.tensor(WEIGHTS, device=device())
    batches = {name: {k: v.to(device()) for k, v in PairCollator(tokenizer.pad_token_id, *flags)(feats).items()}
               for name, flags in LAYOUTS.items()}
    chunks = [int(c) for c in options.chunks.split(",")]
    results = []

    def record(row):
        results.append(row)
        print(json.dumps(row), flush=True)

    for spec in options.models.split(","):
        kind, attn = spec.split(":")
        try:
            model = build(kind, attn).to(device())
        except Exception as err:  # noqa: BLE001 - report and go on
            record({"model": kind, "attn": attn, "error": repr(err)[:300]})
            continue
        model.train()  # as in training; dropout is 0 in these configs
        # References before any attention wrapper: fp32, and the same under bf16 autocast.
        ref_sums, ref_counts = full_logits_logps(model, feats)
        ref_mean = (ref_sums / ref_counts).detach()
        ref_grads = grads(model, (ref_sums * weights).sum())
        with torch.autocast(device(), dtype=torch.bfloat16):
            bf_sums, _ = full_logits_logps(model, feats)
        bf_mean = (bf_sums / ref_counts).detach()
        bf_grads = grads(model, (bf_sums * weights).sum())
        wrapped = use_per_sequence_attention(model)  # what SimPOTrainer does with padding_free
        for layout, batch in batches.items():
            for chunk in chunks:
                row = {"model": kind, "attn": model.config._attn_implementation, "layout": layout, "chunk": chunk,
                       "tokens": batch["input_ids"].numel()}
                try:
                    if layout == "shared" and not wrapped:
                        raise RuntimeError("shared-prompt rows need the per-sequence attention wrapper")
                    sums, counts, _ = response_logps(model, batch, chunk_size=chunk)
                    row["counts_equal"] = bool(torch.equal(counts, ref_counts))
                    row["fp32_max_abs_A"] = (sums / counts - ref_mean).abs().max().item()
                    got = grads(model, (sums * weights).sum())
                    row["grad_keys_equal"] = got.keys() == ref_grads.keys()
                    row["fp32_max_rel_grad"] = max_rel_grad(got, ref_grads)
                    row["ok"] = (row["counts_equal"] and row["grad_keys_equal"] and row["fp32_max_abs_A"] <= 1e-5
                                 and row["fp32_max_rel_grad"] <= 1e-5)
                    if layout == "shared":  # bf16 autocast against the full path under the same autocast
                        with torch.autocast(device(), dtype=torch.bfloat16):
                            bsums = response_logps(model, batch, chunk_size=chunk).sums
                        row["bf16_sums_dtype"] = str(bsums.dtype)
                        row["bf16_max_abs_A"] = (bsums / counts - bf_mean).abs().max().item()
                        bgot = grads(model, (bsums * weights).sum())
                        row["bf16_max_rel_grad"] = max_rel_grad(bgot, bf_grads)
                        row["bf16_head_grad_dtype"] = str(model.get_output_embeddings().weight.grad.dtype)
                        row["bf16_ok"] = row["bf16_max_abs_A"] <= 2e-2 and row["bf16_max_rel_grad"] <= 0.1
                except Exception:  # noqa: BLE001
                    import traceback

                    row["error"] = traceback.format_exc()[-1500:]
                record(row)
        del model
        if device() == "cuda":
            torch.cuda.empty_cache()
    print(summary_table(results), flush=True)
    return results


def summary_table(results: list[dict]) -> str:
    lines = ["| model | attn | layout | chunk | fp32 max abs A | fp32 max rel grad | ok | bf16 max abs A | bf16 max rel grad |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "fp32_max_abs_A" not in r:
            lines.append(f"| {r['model']} | {r['attn']} | {r.get('layout', '')} | {r.get('chunk', '')} | error: "
                         f"{r['error'].strip().splitlines()[-1][:120]} | | | | |")
            continue
        bf16 = (f"{r['bf16_max_abs_A']:.2e} | {r['bf16_max_rel_grad']:.2e}" if "bf16_max_abs_A" in r else " | ")
        lines.append(f"| {r['model']} | {r['attn']} | {r['layout']} | {r['chunk']} | {r['fp32_max_abs_A']:.2e} | "
                     f"{r['fp32_max_rel_grad']:.2e} | {r['ok']} | {bf16} |")
    return "\n".join(lines)


def train(options) -> dict:
    from transformers import AutoTokenizer

    from simpo.config.recipe import build_recipe
    from simpo.data.bundled import make_rows
    from simpo.data.dataset import build_pair_datasets
    from simpo.data.encode import PairEncoder
    from simpo.training.trainer import SimPOTrainer

    folder = Path(tempfile.mkdtemp())
    for split, count, seed in (("train", options.train_rows or 4 * options.train_steps, 0), ("test", 16, 1)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in make_rows(count, seed)))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder())
    recipe = build_recipe({
        "model_name_or_path": "random-smollm2-shape", "dataset_mixer": {str(folder): 1.0}, "dataset_splits": ["train", "test"],
        "output_dir": str(folder / "out"), "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
        "max_steps": options.train_steps, "learning_rate": options.lr, "lr_scheduler_type": "constant", "bf16": True,
        "use_cpu": device() == "cpu", "logging_steps": 1, "save_strategy": "no", "report_to": "none", "eval_strategy": "no",
        "disable_tqdm": True, "seed": 0, "beta": 2.5, "gamma_beta_ratio": 0.5, "max_length": 512, "max_prompt_length": 256,
        "padding_free": options.padding_free, "share_prompt": options.share_prompt, "logps_chunk_size": options.chunk,
    })
    encoder = PairEncoder(tokenizer, 512, 256)
    train_set, test_set = build_pair_datasets(recipe.data, encoder)
    model = build("llama", options.attn_one)
    trainer = SimPOTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=train_set, eval_dataset=test_set)
    before = trainer.evaluate()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    after = trainer.evaluate()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    for entry in logs:
        print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in entry.items()}), flush=True)
    losses = [entry["loss"] for entry in logs]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    collator = trainer.data_collator
    summary = {
        "device": torch.cuda.get_device_name() if device() == "cuda" else "cpu",
        "param_dtype": str(next(model.parameters()).dtype), "attn": model.config._attn_implementation,
        "padding_free": collator.padding_free, "share_prompt": collator.share_prompt, "chunk": options.chunk,
        "steps": len(losses), "train_seconds": seconds, "all_finite": all(math.isfinite(x) for x in losses),
        "loss_first5_mean": first, "loss_last5_mean": last, "decreasing": last < first,
        "eval_loss_before": before.get("eval_loss"), "eval_loss_after": after.get("eval_loss"),
        "eval_before": before, "eval_after": after,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device() == "cuda" else None,
    }
    print(json.dumps(summary, indent=1), flush=True)
    return summary


def bench(options, rest: list[str]) -> None:
    """benchmarks/throughput.py's main, with each failed worker's whole stderr appended to
    $OUT/bench_failures.log (one file, however many fail)."""
    import subprocess

    import throughput

    real_run = subprocess.run
    log = Path(os.environ.get("OUT", tempfile.gettempdir())) / "bench_failures.log"

    def run(command, **kwargs):
        result = real_run(command, **kwargs)
        if result.returncode != 0:
            with log.open("a") as handle:
                handle.write(f"==== {' '.join(map(str, command[2:]))}\n{result.stderr or ''}\n")
            print(f"worker failed: {' '.join(map(str, command[2:]))}; stderr tail:\n{(result.stderr or '')[-3000:]}", flush=True)
        return result

    throughput.subprocess.run = run
    sys.argv = [str(HERE / "throughput.py"), *rest]
    throughput.main()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("correctness", "train", "bench"))
    parser.add_argument("--models", default="llama:sdpa,llama:eager,gemma2:eager", help="correctness: kind:attention, ...")
    parser.add_argument("--chunks", default="0,5,64", help="correctness: chunk sizes")
    parser.add_argument("--attn-one", default="sdpa", help="train: the attention")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--train-rows", type=int, default=24, help="distinct training pairs (0: 4 per step, no repeats)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--chunk", type=int, default=256, help="train: logps_chunk_size")
    flag = lambda s: s.lower() in ("1", "true", "yes")  # noqa: E731
    parser.add_argument("--padding-free", type=flag, default=True)
    parser.add_argument("--share-prompt", type=flag, default=True)
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    options, rest = parser.parse_known_args()
    if options.what == "bench":
        bench(options, rest)
        return
    result = {"correctness": correctness, "train": train}[options.what](options)
    if options.out:
        Path(options.out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
