"""The vllm backend on vLLM's CPU build, in this process: greedy answers equal simpo's engine's,
and each sample is reproducible by its seed whatever shared its batch."""

from __future__ import annotations

import json
import subprocess

import pytest
from vllm_helpers import ENGINE_ANSWERS, MAIN_PYTHON, prompt_rows

from simpo.config.recipe import ModelConfig
from simpo.generation.backends import open_backend
from simpo.generation.prompts import PromptRenderer, prompt_messages
from simpo.models.loading import load_tokenizer

GREEDY_TOKENS = 64


@pytest.fixture(scope="module")
def setup(model_path):
    config = ModelConfig(model_name_or_path=model_path)
    tokenizer = load_tokenizer(config)
    renderer = PromptRenderer(tokenizer)
    prompts = [renderer.ids(prompt_messages(row["prompt"], "test")) for row in prompt_rows("test")]
    vllm = open_backend("vllm", config, tokenizer, renderer.stop_ids, 32, "float32")
    yield prompts, vllm
    vllm.llm.llm_engine.engine_core.shutdown()  # its engine process stops now, not when the session ends


@pytest.fixture(scope="module")
def engine_answers(setup, model_path, tmp_path_factory):
    """simpo's engine's greedy answers (text, tokens, truncated), from the main environment."""
    prompts = tmp_path_factory.mktemp("engine") / "prompts.json"
    prompts.write_text(json.dumps(setup[0]))
    result = subprocess.run([str(MAIN_PYTHON), "-c", ENGINE_ANSWERS, model_path, str(prompts), str(GREEDY_TOKENS)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    return [tuple(answer) for answer in json.loads(result.stdout.splitlines()[-1])]


def test_greedy_answers_equal_simpos_engine_in_fp32(setup, engine_answers):
    prompts, vllm = setup
    [(_, rows, tokens)] = vllm.sample_shards([prompts], [0], 0.0, 1.0, GREEDY_TOKENS)
    answers = [answer for [answer] in rows]
    assert len(prompts) == 100
    differ = [i for i, (a, b) in enumerate(zip(answers, engine_answers)) if (str(a), a.tokens, a.truncated) != b]
    assert differ == [], [(str(answers[i]), engine_answers[i]) for i in differ[:3]]
    assert tokens == sum(a.tokens + (not a.truncated) for a in answers)  # the stop tokens counted, as the engine counts them


def test_each_sample_is_reproducible_by_its_seed_whatever_shared_its_batch(setup):
    prompts, vllm = setup
    first = dict(enumerate(prompts[:6]))
    together = list(vllm.sample_shards([prompts[:4], prompts[4:6]], [13, 21], 0.8, 0.95, 24))
    assert [number for number, _, _ in together] == [0, 1]
    samples = {(i, seed): text for number, rows, _ in together for j, row in enumerate(rows)
               for i, seed, text in ((number * 4 + j, s, t) for s, t in zip([13, 21], row))}
    # the same prompts in another order and grouping, the seeds the other way round, one alone
    apart = list(vllm.sample_shards([[first[5], first[2]], [first[0]]], [21, 13], 0.8, 0.95, 24))
    again = {(5, 21): apart[0][1][0][0], (5, 13): apart[0][1][0][1], (2, 21): apart[0][1][1][0], (2, 13): apart[0][1][1][1],
             (0, 21): apart[1][1][0][0], (0, 13): apart[1][1][0][1]}
    assert {key: str(samples[key]) for key in again} == {key: str(text) for key, text in again.items()}
    [(_, [[alone]], _)] = vllm.sample_shards([[first[3]]], [13], 0.8, 0.95, 24)
    assert str(alone) == str(samples[(3, 13)])
    assert sum(samples[(i, 13)] != samples[(i, 21)] for i in range(6)) >= 4  # the seeds do differ
