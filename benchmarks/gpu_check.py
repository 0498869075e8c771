"""GPU checks of the simpo code paths (on the CPU too, slowly): run on a machine with CUDA.

    python benchmarks/gpu_check.py correctness   # chunked == full logits, packed == padded, values and gradients
    python benchmarks/gpu_check.py train         # 20 SimPOTrainer steps in bf16 on a random SmolLM2-shaped model
    python benchmarks/gpu_check.py bench smollm2 --dtypes bf16   # benchmarks/throughput.py, failures with their traceback
    python benchmarks/gpu_check.py profile       # fwd+bwd time of padded / packed / per-sequence layouts, torch.profiler tables
    python benchmarks/gpu_check.py trainer-ab [--no-cudnn-sdp]   # SimPOTrainer s/step per layout, one process

On an H100 with torch 2.11, SDPA's cuDNN backend builds an execution plan for every new attention
shape; packed rows with per-sequence attention meet ~4 new shapes per step, so short runs measure
that warm-up (`--no-cudnn-sdp`, or `torch.backends.cuda.enable_cudnn_sdp(False)`, removes it).

Models are random-weight, built from configs: SmolLM2-135M's shapes (`$SIMPO_HOME/models/
smollm2-135m-instruct/config.json`) and the small-body, 256k-vocabulary,
soft-capped Gemma-2 of benchmarks/throughput.py. The tokenizer is SmolLM2's (its folder holds the
tokenizer files; no weights are needed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WEIGHTS = [0.7, -1.3, 0.4, 2.0, -0.5, 1.1, -0.9, 0.3]  # a generic linear function of the per-sequence sums


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def tokenizer_folder() -> Path:
    from simpo.models import cache_home

    return cache_home() / "models" / "smollm2-135m-instruct"


def build(kind: str, attn: str):
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig.from_pretrained(tokenizer_folder())  # SmolLM2-135M's config.json, weights random
        config._attn_implementation = attn
        return LlamaForCausalLM(config)
    config = Gemma2Config(  # benchmarks/throughput.py's gemma2-256k
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
    return [encoder.encode(read_pair(row, "row"), "row") for row in make_rows(count, seed)]


def to_device(batch):
    return {key: value.to(device()) for key, value in batch.items()}


def full_logits_logps(model, batch):
    """Independent path: every position's logits of the padded batch, picked by label."""
    from simpo.data.collate import IGNORE

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logps = torch.log_softmax(logits[:, :-1].float(), -1)
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    picked = logps.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return picked.sum(1), mask.sum(1)


def grads(model, value):
    model.zero_grad(set_to_none=True)
    value.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def correctness(options) -> list[dict]:
    from transformers import AutoTokenizer

    from simpo.attention import use_per_sequence_attention
    from simpo.data.collate import PairCollator
    from simpo.logprobs import response_logps

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder())
    feats = features(tokenizer)
    weights = torch.tensor(WEIGHTS, device=device())
    padded = to_device(PairCollator(tokenizer.pad_token_id)(feats))
    packed = to_device(PairCollator(tokenizer.pad_token_id, padding_free=True)(feats))
    results = []
    for kind in options.kinds.split(","):
        for attn in options.attn.split(","):
            try:
                model = build(kind, attn).to(device())
            except Exception as err:  # noqa: BLE001 - report and go on
                results.append({"model": kind, "attn": attn, "error": repr(err)[:300]})
                print(json.dumps(results[-1]), flush=True)
                continue
            model.train()  # as in training; dropout is 0 in these configs
            # fp32 reference: the full logits of the padded batch, before any attention wrapper.
            ref_sums, ref_counts = full_logits_logps(model, padded)
            ref_mean = (ref_sums / ref_counts).detach()
            ref_grads = grads(model, (ref_sums * weights).sum())
            with torch.autocast(device(), dtype=torch.bfloat16):
                bf_sums, _ = full_logits_logps(model, padded)
            bf_ref_mean = (bf_sums / ref_counts).detach()
            use_per_sequence_attention(model)  # what SimPOTrainer does with padding_free
            for layout, batch in (("padded", padded), ("packed", packed)):
                for chunk in (0, 5, 64, 256):
                    row = {"model": kind, "attn": model.config._attn_implementation, "layout": layout, "chunk": chunk}
                    try:
                        sums, counts = response_logps(model, batch, chunk_size=chunk)
                        row["counts_equal"] = bool(torch.equal(counts, ref_counts))
                        row["fp32_max_abs_A"] = (sums / counts - ref_mean).abs().max().item()
                        got = grads(model, (sums * weights).sum())
                        row["grad_keys_equal"] = got.keys() == ref_grads.keys()
                        row["fp32_max_rel_grad"] = max(
                            ((got[n] - g).abs().max() / g.abs().max().clamp(min=1e-30)).item() for n, g in ref_grads.items())
                        with torch.autocast(device(), dtype=torch.bfloat16):
                            bsums, bcounts = response_logps(model, batch, chunk_size=chunk)
                        row["bf16_max_abs_A_vs_bf16_ref"] = (bsums.float() / bcounts - bf_ref_mean).abs().max().item()
                        row["bf16_max_abs_A_vs_fp32_ref"] = (bsums.float() / bcounts - ref_mean).abs().max().item()
                        row["ok"] = (row["counts_equal"] and row["grad_keys_equal"] and row["fp32_max_abs_A"] <= 1e-5
                                     and row["fp32_max_rel_grad"] <= 1e-5)
                    except Exception:  # noqa: BLE001
                        import traceback

                        row["error"] = traceback.format_exc()[-1500:]
                    results.append(row)
                    print(json.dumps(row), flush=True)
            del model
            if device() == "cuda":
                torch.cuda.empty_cache()
    return results


def train(options) -> dict:
    from transformers import AutoTokenizer

    from simpo.config import build_recipe
    from simpo.data.bundled import make_rows
    from simpo.data.dataset import build_pair_datasets
    from simpo.data.encode import PairEncoder
    from simpo.trainer import SimPOTrainer

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
        "padding_free": options.padding_free, "logps_chunk_size": options.chunk,
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
    summary = {
        "device": torch.cuda.get_device_name() if device() == "cuda" else "cpu",
        "param_dtype": str(next(model.parameters()).dtype), "attn": model.config._attn_implementation,
        "steps": len(losses), "train_seconds": seconds, "all_finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses)),
        "loss_first5_mean": first, "loss_last5_mean": last, "decreasing": last < first,
        "eval_before": before, "eval_after": after,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device() == "cuda" else None,
    }
    print(json.dumps(summary, indent=1), flush=True)
    return summary


def profile(options) -> dict:
    """Seconds per forward+backward (bf16 autocast) of 2 UltraFeedback-shaped pairs, layout by layout."""
    import statistics

    from transformers import AutoTokenizer

    import simpo.attention as attention
    from simpo.data.collate import PairCollator
    from simpo.data.encode import PairEncoder
    from simpo.data.rows import read_pair
    from simpo.logprobs import response_logps
    from ufshape import uf_shaped_rows

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder())
    encoder = PairEncoder(tokenizer, 1024, 1023)
    rows = uf_shaped_rows(tokenizer, 2 * options.profile_steps, seed=0)
    feats = [encoder.encode(read_pair(row, "row"), "row") for row in rows]
    groups = [feats[i : i + 2] for i in range(0, len(feats), 2)]
    model = build("llama", "sdpa").to(device()).train()
    original_segments = attention._segments

    import weakref

    last = {"ref": None, "starts": None}

    def memo_segments(position_ids):
        """One device-to-host read per forward (every layer gets the same tensor), not one per layer."""
        if position_ids is None:
            return None
        if last["ref"] is None or last["ref"]() is not position_ids:
            last["ref"], last["starts"] = weakref.ref(position_ids), original_segments(position_ids)
        return last["starts"]

    def register_variant(mode: str) -> str:
        """A per-sequence SDPA wrapper as in simpo.attention, with one change (a candidate fix)."""
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

        name = "gpucheck_" + mode
        if name not in AttentionInterface._global_mapping:
            def fn(module, query, key, value, attention_mask, **kwargs):
                sdpa = AttentionInterface._global_mapping["sdpa"]
                starts = memo_segments(kwargs.get("position_ids"))
                if starts is None:
                    return sdpa(module, query, key, value, attention_mask, **kwargs)
                outputs = []
                for start, end in zip(starts, starts[1:] + [query.shape[2]]):
                    # "causal": no mask, so SDPA runs is_causal=True (flash); "contiguous": the mask block copied
                    mask = None if mode == "causal" or attention_mask is None else attention_mask[:, :, start:end, start:end].contiguous()
                    out, _ = sdpa(module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], mask, **kwargs)
                    outputs.append(out)
                return torch.cat(outputs, dim=1), None

            AttentionInterface.register(name, fn)
            ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
        return name

    def step(batch, chunk):
        with torch.autocast(device(), dtype=torch.bfloat16):
            sums, counts = response_logps(model, batch, chunk_size=chunk)
        (sums / counts).sum().backward()
        model.zero_grad(set_to_none=True)

    variants = [  # name, packed, chunk, attention
        ("padded chunk0", False, 0, "sdpa"), ("padded chunk256", False, 256, "sdpa"),
        ("packed chunk0 plain-sdpa", True, 0, "sdpa"), ("packed chunk256 plain-sdpa", True, 256, "sdpa"),
        ("packed chunk0 per-seq", True, 0, "wrap"), ("packed chunk256 per-seq (simpo default)", True, 256, "wrap"),
        ("packed chunk256 per-seq, segments memoized", True, 256, "memo"),
        ("packed chunk256 per-seq, memoized + contiguous mask", True, 256, "contiguous"),
        ("packed chunk256 per-seq, memoized + no mask (is_causal)", True, 256, "causal"),
    ]
    variants = [v for v in variants if not options.variants or any(part in v[0] for part in options.variants.split(","))]
    results = {}
    out = Path(os.environ.get("OUT", tempfile.gettempdir()))
    for name, packed, chunk, attn in variants:
        model.set_attn_implementation("sdpa")
        attention._segments = memo_segments if attn == "memo" else original_segments
        if attn in ("wrap", "memo"):
            attention.use_per_sequence_attention(model)
        elif attn in ("contiguous", "causal"):
            model.set_attn_implementation(register_variant(attn))
        collate = PairCollator(tokenizer.pad_token_id, padding_free=packed)
        batches = [to_device(collate(group)) for group in groups]
        times = []
        for i, batch in enumerate(batches):
            if device() == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            step(batch, chunk)
            if device() == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - start)
        tokens = sum(int(b["labels"].numel()) for b in batches[2:])
        results[name] = {"median_s": statistics.median(times), "min_s": min(times), "tokens_per_s_incl_padding": tokens / sum(times),
                         "attn": model.config._attn_implementation,
                         "peak_mb_last": torch.cuda.max_memory_allocated() / 2**20 if device() == "cuda" else None}
        print(json.dumps({name: results[name]}), flush=True)
        if name in ("padded chunk0", "packed chunk256 per-seq (simpo default)", "packed chunk256 plain-sdpa") and device() == "cuda":
            from torch.profiler import ProfilerActivity, profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for batch in batches[2:4]:
                    step(batch, chunk)
                torch.cuda.synchronize()
            text = prof.key_averages().table(sort_by="cpu_time_total", row_limit=35, max_name_column_width=60)
            text += "\n\n" + prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60)
            (out / ("prof_" + name.split(" (")[0].replace(" ", "_").replace(",", "") + ".txt")).write_text(text)
    attention._segments = original_segments
    return results


def trainer_ab(options) -> dict:
    """Median seconds per SimPOTrainer step (2 UltraFeedback-shaped pairs, bf16), layout by layout, one process."""
    import statistics

    from transformers import AutoTokenizer

    import simpo.attention as attention
    import simpo.trainer as simpo_trainer
    from simpo.config import build_recipe
    from simpo.data.dataset import build_pair_datasets
    from simpo.data.encode import PairEncoder
    from throughput import StepTimer
    from ufshape import uf_shaped_rows

    steps = options.train_steps
    if options.no_cudnn_sdp:  # cuDNN attention builds an execution plan for every new shape
        torch.backends.cuda.enable_cudnn_sdp(False)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder())
    folder = Path(tempfile.mkdtemp())
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in uf_shaped_rows(tokenizer, 2 * steps, seed=0)))
    original_segments, original_use = attention._segments, simpo_trainer.use_per_sequence_attention

    import weakref

    last = {"ref": None, "starts": None}

    def memo_segments(position_ids):
        """The candidate fix: one device-to-host read per forward (every layer gets the same tensor), not one per layer."""
        if position_ids is None:
            return None
        if last["ref"] is None or last["ref"]() is not position_ids:
            last["ref"], last["starts"] = weakref.ref(position_ids), original_segments(position_ids)
        return last["starts"]

    configs = [("packed chunk256 (default)", True, 256, ""), ("packed chunk0", True, 0, ""), ("padded chunk256", False, 256, ""),
               ("padded chunk0", False, 0, ""), ("packed chunk256, no per-seq wrapper", True, 256, "nowrap"),
               ("packed chunk256, segments memoized", True, 256, "memo"), ("packed chunk256 (default), profiled", True, 256, "profile"),
               ("packed chunk256 (default), again", True, 256, ""), ("packed chunk256, segments memoized, again", True, 256, "memo"),
               ("packed chunk0, segments memoized", True, 0, "memo")]
    if options.variants:
        configs = [c for name in options.variants.split(";") for c in configs if c[0] == name]  # in the order given
    results, data = {}, None
    for name, packed, chunk, patch in configs:
        recipe = build_recipe({
            "model_name_or_path": "smollm2", "dataset_mixer": {str(folder / "pairs.jsonl"): 1.0}, "dataset_splits": ["train"],
            "beta": 2.5, "gamma_beta_ratio": 0.5, "max_length": 1024, "max_prompt_length": 1023, "padding_free": packed,
            "logps_chunk_size": chunk, "output_dir": str(folder / "out"), "per_device_train_batch_size": 2,
            "max_steps": 4 if patch == "profile" else steps, "learning_rate": 1e-6, "bf16": True, "save_strategy": "no",
            "logging_steps": 10**6, "report_to": "none", "disable_tqdm": True, "use_cpu": device() == "cpu", "seed": 0,
        })
        if data is None:
            data, _ = build_pair_datasets(recipe.data, PairEncoder(tokenizer, 1024, 1023))
        attention._segments = memo_segments if patch == "memo" else original_segments
        simpo_trainer.use_per_sequence_attention = (lambda model: None) if patch == "nowrap" else original_use
        model = build("llama", "sdpa")
        timer = StepTimer()
        trainer = simpo_trainer.SimPOTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=data,
                                             callbacks=[timer.callback])
        if device() == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if patch == "profile" and device() == "cuda":
            from torch.profiler import ProfilerActivity, profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                trainer.train()
            out = Path(os.environ.get("OUT", tempfile.gettempdir()))
            (out / "prof_trainer_default.txt").write_text(
                prof.key_averages().table(sort_by="cpu_time_total", row_limit=45, max_name_column_width=70))
        else:
            trainer.train()
        results[name] = {"attn": model.config._attn_implementation, "median_step_s": statistics.median(timer.steps),
                         "mean_step_s_after_first": statistics.mean(timer.steps[1:]), "min_step_s": min(timer.steps),
                         "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device() == "cuda" else None}
        print(json.dumps({name: results[name]}), flush=True)
        del trainer, model
    attention._segments, simpo_trainer.use_per_sequence_attention = original_segments, original_use
    return results


def bench(options, rest: list[str]) -> None:
    """benchmarks/throughput.py's main, with each failed worker's whole stderr kept."""
    import subprocess

    import throughput

    real_run = subprocess.run
    log_dir = Path(os.environ.get("OUT", tempfile.gettempdir()))

    def run(command, **kwargs):
        result = real_run(command, **kwargs)
        if result.returncode != 0:
            name = f"worker_{command[2]}_{command[4]}_{command[6]}.err"
            (log_dir / name).write_text(result.stderr or "")
            print(f"worker failed; stderr tail:\n{(result.stderr or '')[-3000:]}", flush=True)
        return result

    throughput.subprocess.run = run
    sys.argv = [str(HERE / "throughput.py"), *rest]
    throughput.main()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("correctness", "train", "bench", "profile", "trainer-ab"))
    parser.add_argument("--kinds", default="llama,gemma2")
    parser.add_argument("--attn", default="sdpa,eager")
    parser.add_argument("--attn-one", default="sdpa")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--train-rows", type=int, default=0, help="distinct training pairs (0: 4 per step, no repeats)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--no-cudnn-sdp", action="store_true", help="trainer-ab: turn off cuDNN's SDPA backend")
    parser.add_argument("--variants", default="", help="profile only the layouts whose names contain one of these")
    parser.add_argument("--profile-steps", type=int, default=10, help="batches of 2 pairs per profiled layout (2 warm-ups)")
    parser.add_argument("--padding-free", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    options, rest = parser.parse_known_args()
    if options.what == "bench":
        bench(options, rest)
        return
    result = {"correctness": correctness, "train": train, "profile": profile, "trainer-ab": trainer_ab}[options.what](options)
    if options.out:
        Path(options.out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
