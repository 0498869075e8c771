"""`simpo plan` end to end: the official recipes against the published GPU counts, the JSON form,
a model folder, a config file for a hub model that is not on disk, and the help."""

from __future__ import annotations

import json

import pytest
from helpers import REPO

from simpo.cli import main

RECIPES = REPO / "recipes"


def plan(capsys, *argv) -> str:
    assert main(["plan", *map(str, argv)]) == 0
    return capsys.readouterr().out


def plan_json(capsys, *argv) -> dict:
    return json.loads(plan(capsys, *argv, "--json"))


def test_gemma_2_9b_fits_on_8_gpus_of_80_gb(capsys):
    text = plan(capsys, RECIPES / "gemma-2-9b-it-simpo.yaml", "--gpus", 8, "--gpu-memory", 80, "--zero", 3)
    assert "model: google/gemma-2-9b-it (gemma2; config: google/gemma-2-9b-it (the copy shipped with simpo" in text
    assert "  parameters     9,241,705,984" in text
    assert "  weights                                2.15 GiB = 9,241,705,984 x 2 B (bf16: DeepSpeed casts the model, ZeRO-3) / 8 GPUs" in text
    assert "eager attention probabilities 16 heads x 4 sequences x 2,048^2 x 8 B" in text
    assert "  log-prob head, one chunk               1.10 GiB = 256 positions x 256,000 vocabulary x 18 B" in text
    peak = next(line for line in text.splitlines() if line.startswith("peak = "))
    # 2.15 + 2.15 + 4.30 + 8.61 (the states over 8) + 2.45 gathered + 1.50 CUDA = 21.16; the backward pass beats the step
    assert peak.startswith("peak = held 21.16 + max(backward max(at its start: activations 7.81 + the head's gradient, made whole, 1.71;")
    assert peak.endswith(") = 9.52, step 7.45) = 30.68 GiB of 80 GiB: fits, 49.3 GiB to spare")


@pytest.mark.parametrize("recipe, gpus, fits", [
    ("gemma-2-9b-it-simpo", 8, True),
    ("llama-3-8b-instruct-simpo", 4, True),
    ("mistral-7b-instruct-simpo", 4, True),
])
def test_the_published_gpu_counts(capsys, recipe, gpus, fits):
    result = plan_json(capsys, RECIPES / f"{recipe}.yaml", "--gpus", gpus, "--gpu-memory", 80, "--zero", 3)
    assert result["fits"] is fits


def test_gemma_with_full_logits_on_4_gpus_does_not_fit_where_llama_does(capsys):
    """The official trainer holds every position's logits (here `logps_chunk_size: 0`): with Gemma-2's
    256,000-token vocabulary and soft-cap that is what takes 4 x 80 GB over the edge."""
    gemma = plan_json(capsys, RECIPES / "gemma-2-9b-it-simpo.yaml", "--gpus", 4, "--gpu-memory", 80, "--zero", 3, "--logps_chunk_size", 0)
    llama = plan_json(capsys, RECIPES / "llama-3-8b-instruct-simpo.yaml", "--gpus", 4, "--gpu-memory", 80, "--zero", 3, "--logps_chunk_size", 0)
    assert gemma["fits"] is False and llama["fits"] is True
    logits = next(term for term in gemma["backward"] if term["name"] == "full logits (logps_chunk_size 0)")
    assert logits["bytes"] == 8192 * 256000 * 14


def test_json_peak_is_held_plus_the_larger_of_backward_and_step(capsys):
    result = plan_json(capsys, RECIPES / "llama-3-8b-instruct-simpo.yaml", "--gpus", 4, "--gpu-memory", 80, "--fsdp")
    held = sum(term["bytes"] for term in result["held"])
    assert result["peak_bytes"] == held + max(result["backward_bytes"], sum(term["bytes"] for term in result["step"]))
    assert result["setup"]["sharding"] == "fsdp" and result["parameters"] == 8_030_261_248
    assert result["other_checkpointing"]["gradient_checkpointing"] is False


def test_overrides_change_the_micro_batch(capsys):
    two = plan_json(capsys, RECIPES / "mistral-7b-instruct-simpo.yaml", "--gpus", 4, "--gpu-memory", 80, "--zero", 3)
    one = plan_json(capsys, RECIPES / "mistral-7b-instruct-simpo.yaml", "--gpus", 4, "--gpu-memory", 80, "--zero", 3,
                    "--per_device_train_batch_size", 1)
    assert (two["setup"]["pairs"], one["setup"]["pairs"]) == (2, 1)
    checkpoints = [next(t["bytes"] for t in r["backward"] if t["name"] == "layer inputs (checkpoints)") for r in (two, one)]
    assert checkpoints[0] == 2 * checkpoints[1]


def test_a_model_folder_is_read_from_its_config(capsys, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    folder = tiny_model_dir("gemma2")
    result = plan_json(capsys, RECIPES / "smollm2-135m-simpo.yaml", "--gpus", 1, "--gpu-memory", 24, "--model_name_or_path", folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert result["config"] == str(folder) and result["model_type"] == "gemma2"
    assert result["parameters"] == sum(p.numel() for p in model.parameters())


def test_config_option_for_a_hub_model_not_on_disk(capsys, tmp_path):
    config = json.loads((REPO / "src/simpo/models/configs/mistralai--Mistral-7B-Instruct-v0.2.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 2}))
    result = plan_json(capsys, RECIPES / "smollm2-135m-simpo.yaml", "--gpus", 1, "--gpu-memory", 80,
                       "--model_name_or_path", "someone/not-downloaded", "--config", tmp_path)
    assert result["config"] == f"--config {tmp_path}" and result["model"] == "someone/not-downloaded"
    assert result["parameters"] == 2 * 32000 * 4096 + 2 * 218_112_000 + 4096


def test_help_lists_the_options(capsys):
    assert main(["help", "plan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: simpo plan RECIPE.yaml --gpus N --gpu-memory GB [--zero 0-3 | --fsdp]")
    for option in ("--gpus", "--gpu-memory", "--zero", "--fsdp", "--config", "--json"):
        assert f"\n  {option} " in out
