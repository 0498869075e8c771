"""Shared fixtures: the bundled SmolLM2 tokenizer, a Gemma-style tokenizer trained here, and tiny
random Llama and Gemma-2 models built from real `transformers` configs and saved as HF folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from simpo.data.bundled import make_rows
from simpo.models.bundled import bundled_model_dir

REPO = Path(__file__).resolve().parents[1]

# Gemma-2's chat format: BOS from the template, no system role, "model" as the assistant's role.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return bundled_model_dir("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def _train_gemma_style_tokenizer():
    """A byte-level BPE tokenizer with Gemma's special tokens; like Gemma's, it adds BOS itself."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [turn["content"] for row in make_rows(400, seed=7) for turn in row["chosen"] + row["rejected"]]
    corpus += ["user", "model", "system", "You are a careful assistant."]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    fast.chat_template = GEMMA_TEMPLATE
    return fast


@pytest.fixture(scope="session")
def gemma_tokenizer():
    return _train_gemma_style_tokenizer()


def _tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def _tiny_gemma2(tokenizer):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
        sliding_window=32, max_position_embeddings=512, final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "eager"
    return Gemma2ForCausalLM(config)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer, gemma_tokenizer):
    """Factory: `tiny_model_dir("llama" | "gemma2")` is a saved model folder with its tokenizer."""
    built: dict[str, Path] = {}

    def build(kind: str) -> Path:
        if kind not in built:
            torch.manual_seed(0)
            tokenizer = smollm2_tokenizer if kind == "llama" else gemma_tokenizer
            model = _tiny_llama(tokenizer) if kind == "llama" else _tiny_gemma2(tokenizer)
            folder = tmp_path_factory.mktemp(f"tiny-{kind}")
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            built[kind] = folder
        return built[kind]

    return build


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


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
