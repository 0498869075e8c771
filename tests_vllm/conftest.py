"""The vLLM tests run in .venv-vllm (`make test-vllm`), on vLLM's CPU build, with the bundled
SmolLM2-135M-Instruct that `make vllm` prepares."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # helpers; the main suite's tests/ comes first on pytest's path


@pytest.fixture(scope="session")
def model_path() -> str:
    from simpo.models.loading import resolve_model_path

    path = resolve_model_path("smollm2-135m-instruct")
    if not (Path(path) / "config.json").is_file():
        pytest.fail("the bundled model is not prepared: run `make vllm`")
    return path
