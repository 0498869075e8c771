"""Generation throughput of the `transformers` backend: batched and length-grouped against one prompt at a time.

    python benchmarks/generation.py                    # bundled SmolLM2 in bf16, the pipeline's sampling settings
    python benchmarks/generation.py --dtype float32

Both runs sample the same prompts (the bundled arithmetic prompts) with temperature 0.8, top_p 0.95
and the same `max_new_tokens`, through `simpo.generation.backends.TransformersBackend`; batch size 1 is a plain
`model.generate` per prompt. Tokens are generated tokens up to and including the end-of-turn token.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])  # the pipeline recipe's
    options = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simpo.data.bundled import make_prompts
    from simpo.generation.backends import TransformersBackend
    from simpo.generation.prompts import PromptRenderer, prompt_messages
    from simpo.models.bundled import bundled_model_dir

    folder = bundled_model_dir("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, options.dtype))
    renderer = PromptRenderer(tokenizer)
    prompts = [renderer.ids(prompt_messages(row["prompt"], "")) for row in make_prompts(options.prompts, seed=99)]
    print(f"SmolLM2-135M-Instruct, {options.dtype}, {len(prompts)} prompts, max_new_tokens {options.max_new_tokens}, "
          f"temperature 0.8, top_p 0.95, {torch.get_num_threads()} threads")
    print(f"{'batch size':>10} {'tokens':>8} {'seconds':>8} {'tokens/s':>9}")
    rates = {}
    for batch_size in (options.batch_size, 1):
        backend = TransformersBackend(model, tokenizer, renderer.stop_ids, batch_size)
        start = time.perf_counter()
        _, tokens = backend.generate(prompts, 13, 0.8, 0.95, options.max_new_tokens)
        seconds = time.perf_counter() - start
        rates[batch_size] = tokens / seconds
        print(f"{batch_size:>10} {tokens:>8} {seconds:>8.1f} {rates[batch_size]:>9.1f}")
    print(f"batched / one at a time: {rates[options.batch_size] / rates[1]:.1f}x")


if __name__ == "__main__":
    main()
