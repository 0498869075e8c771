"""The `simpo` commands on vLLM's CPU build, each in its own process as a user runs them: `simpo
generate` with `generate.backend: vllm` writes the run folder the transformers backend writes, and
`simpo eval` answers with vLLM and is judged by a real `vllm serve` on 127.0.0.1 (log-prob verdicts
for AlpacaEval, text verdicts for Arena-Hard), with no OPENAI_API_KEY."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from vllm_helpers import MAIN_PYTHON, VLLM_BIN, free_port, post_json, prompt_rows, wait_for_server

from simpo.stages.shards import read_stage

ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}  # GiB; two engines may run side by side here
ENV.pop("OPENAI_API_KEY", None)


def _simpo(python_bin, *args, timeout=900):
    result = subprocess.run([str(python_bin / "simpo"), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def test_simpo_generate_with_vllm_writes_the_run_folder_the_transformers_backend_writes(model_path, tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in prompt_rows("train")[:6]))
    args = ["--model_name_or_path", model_path, "--generate.prompts", prompts, "--generate.seeds", "[13,21]",
            "--generate.max_new_tokens", 24, "--generate.shard_size", 4, "--generate.dtype", "float32"]
    _simpo(VLLM_BIN, "generate", *args, "--generate.output", tmp_path / "vllm", "--generate.backend", "vllm")
    _simpo(MAIN_PYTHON.parent, "generate", *args, "--generate.output", tmp_path / "transformers", "--generate.backend", "transformers")
    by_vllm, by_transformers = read_stage(tmp_path / "vllm"), read_stage(tmp_path / "transformers")
    assert len(by_vllm) == 6
    assert [sorted(row) for row in by_vllm] == [sorted(row) for row in by_transformers]
    texts = lambda rows: [{key: value for key, value in row.items() if key not in ("all_generated_responses", "response_tokens", "truncated")}
                          for row in rows]
    assert texts(by_vllm) == texts(by_transformers)  # prompt ids, prompts, seeds, rows, answers
    assert all(len(row["all_generated_responses"]) == 2 and all(row["all_generated_responses"]) for row in by_vllm)
    manifests = [json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("vllm", "transformers")]
    assert manifests[0].pop("backend") == "vllm" and manifests[1].pop("backend") == "transformers"
    assert manifests[0] == manifests[1]
    assert sorted(p.name for p in (tmp_path / "vllm").iterdir()) == sorted(p.name for p in (tmp_path / "transformers").iterdir())
    # run again: every shard is done, so no engine starts and nothing changes
    _simpo(VLLM_BIN, "generate", *args, "--generate.output", tmp_path / "vllm", "--generate.backend", "vllm", timeout=300)
    assert read_stage(tmp_path / "vllm") == by_vllm


@pytest.fixture
def judge_server(model_path, tmp_path):
    """vLLM's OpenAI-compatible server (what `vllm serve` runs) of the bundled model on 127.0.0.1,
    stopped after the test; its base URL. vllm-cpu's `vllm` command itself fails here: it asks for
    the version of a package named vllm, and this one is named vllm-cpu."""
    port, log = free_port(), tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(VLLM_BIN / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
                                   "--host", "127.0.0.1", "--port", str(port),
                                   "--served-model-name", "judge", "--max-model-len", "4096", "--max-logprobs", "5"],
                                  stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    try:
        wait_for_server(server, f"http://127.0.0.1:{port}/v1/models", 600, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)


def test_simpo_eval_answers_with_vllm_and_is_judged_by_a_vllm_server(model_path, judge_server, tmp_path):
    # the endpoint returns the first token's top log-probs, which AlpacaEval's weighted verdict reads
    answer = post_json(f"{judge_server}/chat/completions", {"model": "judge", "messages": [{"role": "user", "content": "Say m or M."}],
                                                            "max_tokens": 1, "temperature": 1, "logprobs": True, "top_logprobs": 5})
    assert len(answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 5
    output = tmp_path / "eval"
    _simpo(VLLM_BIN, "eval", model_path, "--names", "smollm2", "--backend", "vllm", "--judge", "openai:judge",
           "--judge-base-url", judge_server, "--benchmarks", "alpaca_eval,arena_hard", "--limit", 2, "--max-new-tokens", 16,
           "--judge-max-tokens", 64, "--output", output)  # the served context (4096) holds no 16000-token judgment
    alpaca = json.loads((output / "smollm2" / "alpaca_eval" / "result.json").read_text())
    arena = json.loads((output / "smollm2" / "arena_hard" / "result.json").read_text())
    assert alpaca["judge"] == arena["judge"] == "openai:judge"
    assert alpaca["settings"]["backend"] == "vllm"
    counted = alpaca["judge_counters"]
    assert counted["requests"] >= 1 and not set(counted) & {"errors", "text_fallback", "malformed"}, counted  # log-prob verdicts
    assert "errors" not in arena["judge_counters"], arena["judge_counters"]
    assert arena["protocol"]["judge"].endswith(", judgments cut at 64 tokens") and not arena["comparable"]
    assert (output / "results.md").is_file()
