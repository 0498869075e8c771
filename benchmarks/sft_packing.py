"""One `simpo sft` step on the bundled SmolLM2: packed (padding-free, per-sequence attention) against
padded (one conversation per row), on the same conversations, and the chunked head against the
model's own. Prints the seconds per step (forward + backward of one batch, median of `--repeats`,
the layouts interleaved), the conversations' tokens per second (padding not counted), and the
positions the batch lays out.

    python benchmarks/sft_packing.py [--rows 4] [--max-seq-length 512] [--repeats 3] [--dtype float32] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from machine import describe
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.config.sft import SFTConfig, SFTDataConfig
from simpo.data.sft import ConversationEncoder, build_sft_datasets
from simpo.models.bundled import bundled_model_dir
from simpo.training.sft import SFTTrainer


def prepared(model, tokenizer, rows, packing: bool, chunk_size: int):
    """A step's closure (forward + backward of one batch of `rows`) and the batch's laid-out positions."""
    args = SFTConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, report_to="none", disable_tqdm=True, packing=packing,
                     logps_chunk_size=chunk_size)
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=rows)
    batch = trainer.data_collator([rows[i] for i in range(len(rows))])

    def step() -> float:
        model.zero_grad()
        start = time.perf_counter()
        trainer.compute_loss(model, batch).backward()
        return time.perf_counter() - start

    return step, batch["input_ids"].numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    folder = bundled_model_dir("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = ConversationEncoder(tokenizer, options.max_seq_length, insert_empty_system=False, append_concat_token=False)
    config = SFTDataConfig(dataset_mixer={"data/verifiable-conversations": 1.0}, dataset_splits=["train"])
    packed, _ = build_sft_datasets(config, encoder, packing=True, seed=0)
    packed = packed.select(range(options.rows))
    print(describe())
    print(f"{options.rows} packed rows of at most {options.max_seq_length} tokens, {options.dtype}, {torch.get_num_threads()} threads")
    layouts = {"packed, chunked head": (True, 256), "packed, model's head": (True, 0), "padded, chunked head": (False, 256)}
    steps, times = {}, {name: [] for name in layouts}
    for name, (packing, chunk_size) in layouts.items():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, options.dtype))
        steps[name] = prepared(model, tokenizer, packed, packing, chunk_size)
        steps[name][0]()  # warm-up
    for _ in range(options.repeats):  # interleaved, so that a busy moment of the machine hits every layout alike
        for name, (step, _) in steps.items():
            times[name].append(step())
    real = sum(sum(row["lengths"]) for row in packed)
    print(f"{'layout':<24}{'s/step':>8}{'tokens/s':>10}{'positions':>11}")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"{name:<24}{seconds:>8.2f}{real / seconds:>10.0f}{steps[name][1]:>11}")


if __name__ == "__main__":
    main()
