"""SFT recipes: the official SFT configs load unchanged (every key and value as published), the shipped
recipes are those configs, and the SFT keys are checked before anything loads."""

import json

import pytest
import yaml
from helpers import REPO

from simpo.cli import main
from simpo.config.sft import build_sft_recipe, load_sft_recipe
from simpo.errors import RecipeError

# princeton-nlp/SimPO, training_configs/llama-3-8b-base-sft.yaml (commit 15c4ff89), verbatim but for two
# trailing spaces (after `logging_steps: 5`, in both files).
LLAMA_3_BASE_SFT = r'''# Model arguments
model_name_or_path: meta-llama/Meta-Llama-3-8B
model_revision: main
torch_dtype: bfloat16
use_flash_attention_2: true

# Data training arguments
chat_template: "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
dataset_mixer:
  HuggingFaceH4/ultrachat_200k: 1.0
dataset_splits:
- train_sft
- test_sft
preprocessing_num_workers: 12

# SFT trainer config
bf16: true
do_eval: true
evaluation_strategy: steps
eval_steps: 200
gradient_accumulation_steps: 4
gradient_checkpointing: true
gradient_checkpointing_kwargs:
  use_reentrant: False
hub_model_id: zephyr-7b-sft-full
hub_strategy: every_save
learning_rate: 2.0e-05
log_level: info
logging_steps: 5
logging_strategy: steps
lr_scheduler_type: cosine
max_seq_length: 2048
max_steps: -1
num_train_epochs: 1
output_dir: /scratch/gpfs/DANQIC/ym0081/checkpoints_new/llama-3-8b-sft
run_name: llama-3-8b-sft
overwrite_output_dir: true
per_device_eval_batch_size: 8
per_device_train_batch_size: 8
push_to_hub: false
remove_unused_columns: true
report_to:
- wandb
save_strategy: "steps"
save_steps: 1000000
save_total_limit: 1
seed: 42
warmup_ratio: 0.1'''

# huggingface/alignment-handbook, recipes/zephyr-7b-beta/sft/config_full.yaml (zephyr-7b-sft-full, the
# SimPO paper's Mistral-Base SFT model; princeton-nlp/SimPO has no Mistral SFT config): the handbook
# file's keys and values, its data keys as in the handbook release SimPO builds on (dataset_mixer,
# dataset_splits, preprocessing_num_workers; today's file has the later `dataset_mixture` block).
ZEPHYR_7B_SFT = r'''# Model arguments
model_name_or_path: mistralai/Mistral-7B-v0.1
model_revision: main
torch_dtype: bfloat16
attn_implementation: flash_attention_2

# Data training arguments
chat_template: "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
dataset_mixer:
  HuggingFaceH4/ultrachat_200k: 1.0
dataset_splits:
- train_sft
- test_sft
preprocessing_num_workers: 12

# SFT trainer config
bf16: true
do_eval: true
eval_strategy: epoch
gradient_accumulation_steps: 1
gradient_checkpointing: true
gradient_checkpointing_kwargs:
  use_reentrant: False
hub_model_id: zephyr-7b-sft-full
hub_strategy: every_save
learning_rate: 2.0e-05
log_level: info
logging_steps: 5
logging_strategy: steps
lr_scheduler_type: cosine
max_seq_length: 2048
max_steps: -1
num_train_epochs: 1
output_dir: data/zephyr-7b-sft-full
overwrite_output_dir: true
per_device_eval_batch_size: 8
per_device_train_batch_size: 16
push_to_hub: true
remove_unused_columns: true
report_to:
- tensorboard
save_strategy: "steps"
save_steps: 100
save_total_limit: 1
seed: 42
warmup_ratio: 0.1'''

OFFICIAL = {"llama-3-8b-base-sft": LLAMA_3_BASE_SFT, "mistral-7b-base-sft": ZEPHYR_7B_SFT}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_the_official_sft_configs_load_unchanged(name, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_text(OFFICIAL[name])
    recipe = load_sft_recipe(path)
    args, model, data = recipe.training, recipe.model, recipe.data
    assert (args.max_seq_length, args.packing, args.learning_rate, args.lr_scheduler_type) == (2048, True, 2e-5, "cosine")
    assert args.warmup_steps == 0.1 and args.num_train_epochs == 1 and args.activation_checkpointing is True
    assert args.eval_strategy == ("steps" if name.startswith("llama") else "epoch")  # `evaluation_strategy` in the llama file
    assert (args.bf16, args.do_eval, args.overwrite_output_dir, args.remove_unused_columns) == (True, True, True, True)
    assert model.attn_implementation == "flash_attention_2" and model.torch_dtype == "bfloat16"
    assert model.chat_template == yaml.safe_load(OFFICIAL[name])["chat_template"]
    assert data.dataset_mixer == {"HuggingFaceH4/ultrachat_200k": 1.0} and data.dataset_splits == ["train_sft", "test_sft"]
    assert data.auto_insert_empty_system_msg is True and args.packing_options() == {"add_special_tokens": True, "append_concat_token": True}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_the_shipped_recipes_are_the_official_configs(name):
    """Key for key, value for value; only output_dir (and push_to_hub for the handbook's file) differ."""
    official = yaml.safe_load(OFFICIAL[name])
    shipped = yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())
    differ = {key for key in official.keys() | shipped.keys() if official.get(key) != shipped.get(key)}
    assert differ == ({"output_dir"} if name.startswith("llama") else {"output_dir", "push_to_hub"})
    assert load_sft_recipe(REPO / "recipes" / f"{name}.yaml").training.output_dir == f"outputs/{name}"


def test_the_cpu_recipe_and_trl_packing_options_load():
    recipe = load_sft_recipe(REPO / "recipes" / "smollm2-135m-sft.yaml", ["--packing", "false"])
    assert recipe.training.packing is False and recipe.data.auto_insert_empty_system_msg is False
    assert recipe.training.packing_options() == {"add_special_tokens": True, "append_concat_token": False}
    # The handbook's chat-template recipes set both (zephyr-7b-gemma, starchat2-15b).
    both = {"add_special_tokens": False, "append_concat_token": False}
    assert build_sft_recipe({**BASE, "dataset_kwargs": both}).training.packing_options() == both


BASE = {"model_name_or_path": "smollm2-135m-instruct", "dataset_mixer": {"data/verifiable-conversations": 1.0}}


@pytest.mark.parametrize("change,expect", [
    ({"dataset_kwargs": {"skip_prepare_dataset": True}}, "dataset_kwargs: 'skip_prepare_dataset' is not supported"),
    ({"use_flash_attention_2": True, "attn_implementation": "sdpa"}, "use_flash_attention_2: true contradicts attn_implementation: sdpa"),
    ({"max_seq_length": 1}, "max_seq_length must be >= 2, got 1"),
    ({"packing": "maybe"}, "packing must be true or false, got 'maybe'"),
    ({"beta": 2.0}, "'beta' in the recipe is not an SFT key: it belongs to a preference recipe"),
    ({"ref_model_name_or_path": "x"}, "'ref_model_name_or_path' in the recipe is not an SFT key"),
    ({"max_seq_lenght": 512}, "unknown recipe key 'max_seq_lenght' in the recipe; did you mean 'max_seq_length'?"),
    ({"dataset_mixture": {"datasets": []}}, "did you mean 'dataset_mixer'?"),
])
def test_bad_sft_keys_fail_before_anything_loads(change, expect):
    with pytest.raises(RecipeError, match=expect.replace("(", r"\(").replace("?", r"\?")):
        build_sft_recipe({**BASE, **change})


def test_dry_run_prints_the_resolved_recipe_and_help_lists_the_sft_keys(capsys):
    assert main(["sft", str(REPO / "recipes" / "smollm2-135m-sft.yaml"), "--max_seq_length", "128", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["training"]["max_seq_length"] == 128 and resolved["data"]["auto_insert_empty_system_msg"] is False
    assert main(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  max_seq_length " in out and "  packing " in out and "  dataset_kwargs " in out and "  learning_rate " in out
    assert "ref_model_name_or_path" not in out
