"""Shared fixtures: the bundled SmolLM2 tokenizer, a Gemma-style tokenizer trained here, tiny
random Llama, Gemma-2 and Gemma-3 models built from real `transformers` configs and saved as HF folders, one
torch thread, and a reference log-prob cache in the test's own folder. Helpers live in `helpers.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import GEMMA_TEMPLATE

from simpo.data.bundled import make_rows
from simpo.models.bundled import bundled_model_dir


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


def _tiny_gemma3(tokenizer):
    """Gemma-3's text model as Gemma-3-270M has it, in miniature: sliding-window layers (here a
    window of 16, which the test sequences cross) beside a global one, each with its own rotary base,
    query/key RMS norms, scaling by query_pre_attn_scalar (not head_dim), the embedding scaled by
    sqrt(hidden), tied embeddings, no soft-caps."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=24,
        sliding_window=16, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
        max_position_embeddings=512, final_logit_softcapping=None, attn_logit_softcapping=None, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "eager"
    return Gemma3ForCausalLM(config)


TINY = {"llama": _tiny_llama, "gemma2": _tiny_gemma2, "gemma3": _tiny_gemma3}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer, gemma_tokenizer):
    """Factory: `tiny_model_dir("llama" | "gemma2" | "gemma3")` is a saved model folder with its tokenizer."""
    built: dict[str, Path] = {}

    def build(kind: str) -> Path:
        if kind not in built:
            torch.manual_seed(0)
            tokenizer = smollm2_tokenizer if kind == "llama" else gemma_tokenizer
            model = TINY[kind](tokenizer)
            folder = tmp_path_factory.mktemp(f"tiny-{kind}")
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            built[kind] = folder
        return built[kind]

    return build


@pytest.fixture
def one_thread():
    # The tiny models' ops are too small to gain from threads; on a shared 2-core machine a second
    # thread waiting for a busy core makes every op many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cache_in_tmp(tmp_path, monkeypatch):
    """SIMPO_HOME in the test's folder; the reference log-prob cache folder it holds."""
    monkeypatch.setenv("SIMPO_HOME", str(tmp_path / "simpo-home"))
    return tmp_path / "simpo-home" / "ref-logps"
