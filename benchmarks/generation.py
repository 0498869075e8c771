"""Generation throughput: simpo's `transformers` backend against plain batched `model.generate`.

    python benchmarks/generation.py                          # bundled SmolLM2, dtype auto, the pipeline's sampling
    python benchmarks/generation.py --dtype float32 --batch-size 96

Both sample the same prompts (the bundled arithmetic prompts), sorted by length and cut into the
same batches, with temperature 0.8, top_p 0.95 and the same `max_new_tokens`. `generate` is
transformers' own loop and top-p (finished rows stay in the batch until its longest answer ends);
`simpo` is `TransformersBackend` (finished rows leave the batch, top-p without a full sort);
`simpo-seeds` (with --seeds) samples the official five seeds of each prompt as the pipeline does,
`batch size / 5` prompts a batch, so that a batch has the same number of rows.
Tokens are generated tokens up to and including the end-of-turn token. Emulate a CPU without
native bf16 with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--seeds", action="store_true", help="also the pipeline's five seeds per prompt, sampled in one batch")
    options = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simpo.data.bundled import make_prompts
    from simpo.generation.backends import TransformersBackend
    from simpo.generation.prompts import PromptRenderer, prompt_messages
    from simpo.models.bundled import bundled_model_dir
    from simpo.models.precision import DTYPES, resolve_dtype

    dtype = resolve_dtype(options.dtype)
    folder = bundled_model_dir("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype]).eval()
    renderer = PromptRenderer(tokenizer)
    prompts = sorted((renderer.ids(prompt_messages(row["prompt"], "")) for row in make_prompts(options.prompts, seed=99)), key=len)
    batches = [prompts[i : i + options.batch_size] for i in range(0, len(prompts), options.batch_size)]
    pad = tokenizer.pad_token_id

    def plain_generate() -> int:
        tokens = 0
        for b, batch in enumerate(batches):
            width = max(map(len, batch))
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch])
            mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
            torch.manual_seed(13 + b)
            with torch.inference_mode():
                output = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=options.max_new_tokens, do_sample=True,
                                        temperature=0.8, top_p=0.95, top_k=0, eos_token_id=renderer.stop_ids, pad_token_id=pad)
            for new in output[:, width:].tolist():
                end = next((i for i, token in enumerate(new) if token in renderer.stop_ids), None)
                tokens += len(new) if end is None else end + 1
        return tokens

    def simpo_backend() -> int:
        return TransformersBackend(model, tokenizer, renderer.stop_ids, options.batch_size).generate(
            prompts, 13, 0.8, 0.95, options.max_new_tokens)[1]

    def simpo_seeds() -> int:  # the pipeline's way: the official five seeds of each prompt in one batch
        backend = TransformersBackend(model, tokenizer, renderer.stop_ids, max(1, options.batch_size // 5))
        return backend.sample(prompts, [13, 21, 42, 79, 100], 0, 0.8, 0.95, options.max_new_tokens)[1]

    print(f"{describe()}; "
          f"SmolLM2-135M-Instruct {dtype}, {len(prompts)} prompts, batch {options.batch_size}, "
          f"max_new_tokens {options.max_new_tokens}, temperature 0.8, top_p 0.95")
    print(f"{'engine':>10} {'tokens':>8} {'seconds':>8} {'tokens/s':>9}")
    rates = {}
    engines = (("generate", plain_generate), ("simpo", simpo_backend), ("simpo-seeds", simpo_seeds))
    for name, run in engines[: 3 if options.seeds else 2]:
        start = time.perf_counter()
        tokens = run()
        seconds = time.perf_counter() - start
        rates[name] = tokens / seconds
        print(f"{name:>10} {tokens:>8} {seconds:>8.1f} {rates[name]:>9.1f}")
    print(f"simpo / generate: {rates['simpo'] / rates['generate']:.2f}x")
    if options.seeds:
        print(f"simpo-seeds (5 seeds x {len(prompts)} prompts, {max(1, options.batch_size // 5)} prompts a batch) / generate: "
              f"{rates['simpo-seeds'] / rates['generate']:.2f}x")


if __name__ == "__main__":
    main()
