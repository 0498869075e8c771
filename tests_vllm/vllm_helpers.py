"""What the vLLM tests share."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPTS = REPO / "data" / "verifiable-prompts"


def prompt_rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (PROMPTS / f"{split}.jsonl").read_text().splitlines()]


MAIN_PYTHON = REPO / ".venv" / "bin" / "python"

# simpo's engine as `make test` runs it: in the main environment (transformers 5.24; the engine's
# `cache=` keyword is newer than the transformers 5.19 that vLLM's CPU build pins)
ENGINE_ANSWERS = """
import json, sys
from simpo.config.recipe import ModelConfig
from simpo.generation.backends import open_backend
from simpo.generation.prompts import PromptRenderer
from simpo.models.loading import load_tokenizer
model, prompts, max_new_tokens = sys.argv[1], json.loads(open(sys.argv[2]).read()), int(sys.argv[3])
config = ModelConfig(model_name_or_path=model)
tokenizer = load_tokenizer(config)
backend = open_backend("transformers", config, tokenizer, PromptRenderer(tokenizer).stop_ids, 32, "float32")
[(_, rows, _)] = backend.sample_shards([prompts], [0], 0.0, 1.0, max_new_tokens)  # greedy: the seed is unused
print(json.dumps([[str(t), t.tokens, t.truncated] for [t] in rows]))
"""


VLLM_BIN = Path(sys.executable).parent  # .venv-vllm/bin: simpo and vllm beside this python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(process: subprocess.Popen, url: str, seconds: float, log: Path) -> None:
    """Until `url` answers 200, or fail with the server's last log lines."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"vllm serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise AssertionError(f"vllm serve did not answer {url} within {seconds:.0f} s:\n{log.read_text()[-3000:]}")


def post_json(url: str, body: dict, timeout: float = 120) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
