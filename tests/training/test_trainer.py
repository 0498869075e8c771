"""The trainer on real models: its logged metrics are the formulas of its log-probs, tiny models
train to accuracy 1, bf16 runs the chunked head under autocast, and a real SmolLM2's first logged
step equals plain transformers."""

import json

import pytest
import torch
from helpers import plain_response_stats, train_tiny, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.config.recipe import build_recipe
from simpo.data.bundled import make_rows
from simpo.data.collate import PairCollator
from simpo.data.encode import PairEncoder
from simpo.data.rows import read_pair
from simpo.ops.attention import use_per_sequence_attention
from simpo.ops.logprobs import response_logps


def tiny_recipe(folder, data, out, **extra):
    values = {
        "model_name_or_path": str(folder), "dataset_mixer": {str(data): 1.0}, "output_dir": str(out),
        "beta": 2.0, "gamma_beta_ratio": 0.3, "max_length": 128, "max_prompt_length": 64,
        "learning_rate": 3e-3, "lr_scheduler_type": "constant", "per_device_train_batch_size": 4,
        "num_train_epochs": 1, "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": 0,
        "disable_tqdm": True,
    }
    return build_recipe({**values, **extra})


@pytest.mark.parametrize("kind", ["llama", "gemma2"])
def test_tiny_models_reach_training_accuracy_one(kind, tiny_model_dir, tmp_path):
    folder = tiny_model_dir(kind)
    data = tmp_path / "pairs"
    write_jsonl(data / "train.jsonl", make_rows(8, seed=11))
    logged = train_tiny(folder, tiny_recipe(folder, data, tmp_path / "out", num_train_epochs=15))
    assert logged[-1]["rewards/accuracies"] == 1.0
    assert logged[-1]["loss"] < logged[0]["loss"]
    # Every metric is the formula of its log-probs: rewards = beta * logps, margins = their difference.
    last = logged[-1]
    assert last["rewards/chosen"] == pytest.approx(2.0 * last["logps/chosen"], rel=1e-5)
    assert last["rewards/margins"] == pytest.approx(last["rewards/chosen"] - last["rewards/rejected"], rel=1e-4, abs=1e-5)


def test_bf16_training_runs_the_chunked_head_under_autocast_too(tiny_model_dir, tmp_path):
    """Accelerate puts bf16 autocast on the model's forward alone; the trainer's log-probs are those
    of the whole computation under autocast, the chunked output head after that forward included."""
    folder = tiny_model_dir("llama")
    rows = make_rows(1, seed=5)
    write_jsonl(tmp_path / "pairs" / "train.jsonl", rows)
    recipe = tiny_recipe(folder, tmp_path / "pairs", tmp_path / "out", bf16=True, learning_rate=0.0,
                         per_device_train_batch_size=1, max_steps=1, logps_chunk_size=16)
    logged = train_tiny(folder, recipe)[0]

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    encoder = PairEncoder(tokenizer, max_length=128, max_prompt_length=64)
    batch = PairCollator(tokenizer.pad_token_id, padding_free=True, share_prompt=True)(
        [encoder.encode(read_pair(row, "row"), "row") for row in rows])
    use_per_sequence_attention(model)
    means = {}
    for autocast in (True, False):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            sums, counts, _ = response_logps(model, batch, chunk_size=16)
        means[autocast] = sums / counts  # chosen, rejected
    # bf16 is told apart from fp32 here: the tiny model's mean log-probs differ by 2.7e-5 or more,
    # twenty times the tolerance below.
    assert abs(means[True] - means[False]).min() > 2e-5
    assert logged["logps/chosen"] == pytest.approx(means[True][0].item(), abs=1e-6)
    assert logged["logps/rejected"] == pytest.approx(means[True][1].item(), abs=1e-6)


@pytest.mark.usefixtures("one_thread")
def test_logged_lengths_are_the_response_token_counts(tiny_model_dir, tmp_path):
    """`lengths/chosen|rejected`: the mean response tokens of the step's pairs, each counted here by
    rendering the conversation and its prompt with the chat template (the end-of-turn token included)."""
    folder = tiny_model_dir("llama")
    rows = make_rows(4, seed=13)
    write_jsonl(tmp_path / "pairs" / "train.jsonl", rows)
    logged = train_tiny(folder, tiny_recipe(folder, tmp_path / "pairs", tmp_path / "out", learning_rate=0.0, max_steps=1))[0]
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def tokens(messages):
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(messages, tokenize=False)
        return len(tokenizer(whole, add_special_tokens=False)["input_ids"]) - len(tokenizer(prompt, add_special_tokens=False)["input_ids"])

    for side in ("chosen", "rejected"):
        counts = [tokens(row[side]) for row in rows]
        assert len(set(counts)) > 1  # the mean is of different lengths
        assert logged[f"lengths/{side}"] == pytest.approx(sum(counts) / 4, abs=1e-9)


def test_real_smollm2_logged_logps_match_plain_transformers(smollm2_dir, tmp_path):
    rows = make_rows(4, seed=21)
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    recipe = build_recipe({
        "model_name_or_path": "smollm2-135m-instruct", "dataset_mixer": {str(data): 1.0},
        "output_dir": str(tmp_path / "out"), "max_length": 256, "max_prompt_length": 128,
        "per_device_train_batch_size": 4, "max_steps": 2, "learning_rate": 1e-5, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "disable_tqdm": True, "sft_weight": 0.5,
    })
    from simpo.stages.train import run_training

    run_training(recipe)
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    first = state["log_history"][0]  # step 1: the initial weights on all four pairs
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    plain = {side: plain_response_stats(model, tokenizer, rows, side) for side in ("chosen", "rejected")}
    chosen, rejected = plain["chosen"]["average"], plain["rejected"]["average"]
    assert first["logps/chosen"] == pytest.approx(chosen.mean().item(), abs=1e-4)
    assert first["logps/rejected"] == pytest.approx(rejected.mean().item(), abs=1e-4)
    assert first["logits/chosen"] == pytest.approx(plain["chosen"]["mean_logit"].mean().item(), abs=1e-4)
    assert first["logits/rejected"] == pytest.approx(plain["rejected"]["mean_logit"].mean().item(), abs=1e-4)
    assert first["rewards/accuracies"] == pytest.approx((chosen > rejected).double().mean().item())
    margin = 2.0 * (chosen - rejected - 0.25)  # default beta 2.0, gamma_beta_ratio 0.25
    # The official SFT term: the token-mean NLL over every chosen token of the batch, weighted 0.5.
    tokens = plain["chosen"]["tokens"]
    sft_loss = -(chosen * tokens).sum().item() / tokens.sum().item()
    assert first["sft_loss"] == pytest.approx(sft_loss, abs=1e-4)
    expected_loss = -torch.nn.functional.logsigmoid(margin).mean().item() + 0.5 * sft_loss
    assert first["loss"] == pytest.approx(expected_loss, abs=1e-4)
