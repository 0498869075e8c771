"""The architecture as a rule: stages never import one another (but `pipeline` and `sweep`, which run
others), and pure math and the error types import no transformers."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from helpers import REPO

STAGES = REPO / "src" / "simpo" / "stages"
STAGE_NAMES = {"train", "sft", "generate", "annotate", "binarize", "evaluate", "eval", "card", "chat", "inspect", "plan", "merge", "pipeline", "sweep"}


def _imported_stages(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1 and module in STAGE_NAMES:
                found.add(module)
            if module.startswith("simpo.stages.") or (node.level == 2 and module.startswith("stages.")):
                found.add(module.rsplit(".", 1)[-1])
    return found


@pytest.mark.parametrize("stage", sorted(STAGE_NAMES - {"pipeline", "sweep"}))
def test_a_stage_imports_no_other_stage(stage):
    assert _imported_stages(STAGES / f"{stage}.py") == set()


def test_the_pipeline_runs_the_other_stages():
    assert _imported_stages(STAGES / "pipeline.py") == STAGE_NAMES - {"pipeline", "chat", "sft", "inspect", "plan", "merge", "sweep"}


def test_the_sweep_runs_train_and_evaluate():
    assert _imported_stages(STAGES / "sweep.py") == {"train", "evaluate"}


@pytest.mark.parametrize("module", ["simpo.errors", "simpo.training.losses", "simpo.stages.shards", "simpo.stages.lock", "simpo.stages.pipeline_record",
                                    "simpo.data.rows", "simpo.ops.blocked_attention", "simpo.evals.winrate", "simpo.evals.zeroeval",
                                    "simpo.evals.table", "simpo.evals.judges", "simpo.models.shape", "simpo.training.memory",
                                    "simpo.generation.sampling"])
def test_pure_modules_import_no_transformers(module):
    code = f"import sys, {module}; print('transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.stdout.strip() == "False", result.stderr


def test_config_depends_on_nothing_above_it():
    """Recipes are read and checked by config/ alone: no evaluation, generation, reward, stage or model-loading code."""
    code = ("import sys, simpo.config.pipeline, simpo.config.recipe, simpo.config.sft, simpo.config.judge; "
            "print(sorted(m for m in sys.modules if m.startswith(('simpo.evals', 'simpo.generation', 'simpo.rewards', "
            "'simpo.stages', 'simpo.models.loading', 'simpo.ops'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.stdout.strip() == "[]", result.stderr
