"""Helpers shared by the tests (fixtures are in conftest.py): paths, files, a tiny training run,
the Gemma-2 chat template, recipe values, pair features, log-probs with plain transformers, waiting
for an event, and another process holding a folder's lock."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from simpo.data.bundled import make_prompts, make_rows

REPO = Path(__file__).resolve().parents[1]

# Gemma-2's chat format: BOS from the template, no system role, "model" as the assistant's role.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# One question, a right and a wrong answer: the pair most data tests read, encode and collate.
USER = {"role": "user", "content": "What is 2 + 3?"}
RIGHT = {"role": "assistant", "content": "2 + 3 = 5."}
WRONG = {"role": "assistant", "content": "2 + 3 = 6."}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def write_prompts(folder: Path, train: int = 10, test: int = 4) -> Path:
    """A prompts folder of bundled verifiable prompts: `train.jsonl` (seed 3) and `test.jsonl` (seed 4)."""
    write_jsonl(folder / "train.jsonl", make_prompts(train, seed=3))
    write_jsonl(folder / "test.jsonl", make_prompts(test, seed=4))
    return folder


def recipe_values(folder, data, out, **extra) -> dict:
    """A training recipe's values for a tiny model folder: max_length 128, prompt 64, no saving."""
    values = {
        "model_name_or_path": str(folder), "dataset_mixer": {str(data): 1.0}, "output_dir": str(out),
        "max_length": 128, "max_prompt_length": 64, "learning_rate": 3e-3, "lr_scheduler_type": "constant",
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "num_train_epochs": 1, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "seed": 0, "disable_tqdm": True,
    }
    return {**values, **extra}


def train_tiny(folder: Path, recipe) -> list[dict]:
    """Train a tiny model folder with `recipe` (max_length 128, prompt 64); the logged training entries."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simpo.data.dataset import build_pair_datasets
    from simpo.data.encode import PairEncoder
    from simpo.training.trainer import SimPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    train, _ = build_pair_datasets(recipe.data, PairEncoder(tokenizer, 128, 64))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    trainer = SimPOTrainer(model=model, args=recipe.training, processing_class=tokenizer, train_dataset=train)
    trainer.train()
    return [entry for entry in trainer.state.log_history if "rewards/accuracies" in entry]


def load_causal_lm(folder, untie: bool = False, attention: str | None = None):
    """A model folder in fp32; `untie`: with a separate output head, as Llama-3-8B and Mistral have;
    `attention`: an attn_implementation other than the folder's default (Gemma-3's is SDPA)."""
    from transformers import AutoModelForCausalLM

    kwargs = {"attn_implementation": attention} if attention else {}
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    if untie:
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() + 0.01)
    return model


def pair_features(folder, count: int = 4, seed: int = 9):
    """The tokenizer and `count` encoded bundled pairs, the first two with responses made unequal
    both ways round, so that a shared prompt is followed by either the longer or the shorter first."""
    from transformers import AutoTokenizer

    from simpo.data.encode import PairEncoder
    from simpo.data.rows import read_pair

    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = PairEncoder(tokenizer, max_length=256, max_prompt_length=128)
    feats = [encoder.encode(read_pair(row, "row"), "row") for row in make_rows(count, seed)]
    feats[0]["rejected_ids"] = feats[0]["rejected_ids"] + feats[0]["chosen_ids"][:7]
    feats[1]["chosen_ids"] = feats[1]["chosen_ids"] + feats[1]["rejected_ids"][:5]
    return tokenizer, feats


def plain_response_stats(model, tokenizer, rows, side) -> dict[str, torch.Tensor]:
    """Per row with plain transformers (full logits, response tokens found by rendering): A(y) as
    `average`, the response's token count as `tokens`, and its positions' mean logit as `mean_logit`."""
    stats = {"average": [], "tokens": [], "mean_logit": []}
    for row in rows:
        prompt, answer = row[side][:-1], row[side][-1]
        prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        whole_text = tokenizer.apply_chat_template(prompt + [answer], tokenize=False)
        prompt_len = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([tokenizer(whole_text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0].double()
        token_logps = torch.log_softmax(logits[:-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        stats["average"].append(token_logps[prompt_len - 1 :].mean().item())
        stats["tokens"].append(len(token_logps) - prompt_len + 1)
        stats["mean_logit"].append(logits[prompt_len - 1 : -1].mean().item())
    return {key: torch.tensor(values, dtype=torch.float64) for key, values in stats.items()}


def plain_average_logps(model, tokenizer, rows, side):
    """A(y) for each row with plain transformers."""
    return plain_response_stats(model, tokenizer, rows, side)["average"]


# Only turns a hang into a failure: the tests wait for events (a file, an exit), never for a time.
SAFETY_TIMEOUT_S = 600


def wait_for(event, what: str, timeout: float = SAFETY_TIMEOUT_S, poll: float = 0.05) -> None:
    """Poll until `event()` is true, every `poll` seconds; fail after `timeout` seconds, which only a hang reaches."""
    give_up = time.monotonic() + timeout
    while not event():
        if time.monotonic() > give_up:
            pytest.fail(f"no {what} after {timeout:.0f} s: hung?")
        time.sleep(poll)


# Locks FOLDER (simpo.stages.lock), says so, and holds the lock until its stdin closes or it is killed.
HOLDER = "import sys\nfrom simpo.stages.lock import folder_lock\nwith folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    sys.stdin.read()"


@contextlib.contextmanager
def lock_holder(folder: Path):
    """Another process holding `folder`'s lock for the block (the Popen); killed with SIGKILL at its end."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout.readline() == "held\n", process.stderr.read()
            yield process
        finally:
            process.kill()


def greedy(backend, prompts: list[list[int]], max_new_tokens: int, copies: int = 1) -> tuple[list, int]:
    """A backend's greedy answers to `prompts` in one shard (`copies` rows each, prompt-major) and the tokens generated."""
    [(_, responses, tokens)] = backend.sample_shards([prompts], list(range(copies)), 0.0, 1.0, max_new_tokens)
    return [text for texts in responses for text in texts], tokens


PIPELINE_SEEDS = [1, 2, 3, 4]


def pipeline_recipe(tmp_path: Path, model, prompts, **extra) -> Path:
    """A pipeline recipe on a tiny model that trains 2 steps (seeds 1-4, 8 new tokens), its top-level
    keys replaced by `extra`, written to tmp_path/pipeline.yaml."""
    import yaml

    recipe = {
        "model_name_or_path": str(model), "run_dir": str(tmp_path / "run"),
        "generate": {"prompts": str(prompts), "seeds": PIPELINE_SEEDS, "max_new_tokens": 8, "batch_size": 8, "shard_size": 4},
        "annotate": {"rewards": [{"type": "numeric_answer"}]},
        "binarize": {"test_size": 0.2},
        "evaluate": {"max_new_tokens": 8},
        "eval": {"benchmarks": []},
        "max_length": 128, "max_prompt_length": 64, "per_device_train_batch_size": 2, "max_steps": 2,
        "learning_rate": 1e-3, "report_to": "none", "save_strategy": "no", "disable_tqdm": True, **extra,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path
