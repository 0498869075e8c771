"""`auto` dtypes: bf16 only where the machine computes it natively; explicit bf16 elsewhere warns."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO

from simpo.config.recipe import build_recipe
from simpo.errors import RecipeError
from simpo.models.precision import resolve_dtype

# oneDNN reads its ISA limit when it starts, so an AVX2-only CPU is emulated in a fresh process.
AVX2_ONLY = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=AVX2_ONLY, capture_output=True, text=True, timeout=600, cwd=REPO)


def test_auto_is_float32_on_a_cpu_without_native_bf16():
    result = _run(
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from simpo.models.precision import resolve_dtype, resolve_bf16\n"
        "print(resolve_dtype('auto', 'generate.dtype'), resolve_bf16('auto'))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["float32", "False"]
    assert "generate.dtype auto -> float32" in result.stderr
    assert "bf16 auto -> false" in result.stderr


def test_explicit_bf16_on_such_a_cpu_runs_with_a_warning_that_says_how_to_switch():
    result = _run(
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from simpo.models.precision import resolve_dtype, resolve_bf16\n"
        "print(resolve_dtype('bfloat16', 'evaluate.dtype'), resolve_bf16(True))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["bfloat16", "True"]
    assert "evaluate.dtype bfloat16 on this machine will be many times slower than float32" in result.stderr
    assert "set evaluate.dtype: auto (or float32) to switch" in result.stderr
    assert "bf16: true on this machine makes training many times slower" in result.stderr


def test_the_cpu_recipe_resolves_bf16_auto_in_its_dry_run():
    result = subprocess.run([sys.executable, "-m", "simpo.cli", "train", "recipes/smollm2-135m-simpo.yaml", "--dry-run"],
                            env=AVX2_ONLY, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["training"]["bf16"] is False


def test_unset_and_explicit_dtypes_pass_through():
    assert resolve_dtype(None) == "float32"
    assert resolve_dtype("float16") == "float16"
    assert resolve_dtype("float32") == "float32"


@pytest.mark.parametrize("values,message", [
    ({"bf16": "maybe"}, "bf16 must be true, false or auto"),
    ({"torch_dtype": "fp8"}, "torch_dtype must be one of auto, float32, bfloat16, float16, got 'fp8'"),
])
def test_bad_precision_settings_name_the_key(values, message):
    recipe = {"model_name_or_path": "m", "dataset_mixer": {"d": 1.0}, **values}
    with pytest.raises(RecipeError, match=message):
        build_recipe(recipe)
