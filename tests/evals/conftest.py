"""The `alpaca_eval` package (the test extra), imported offline, for the tests that compare simpo's
AlpacaEval code with the official one on the same inputs."""

import importlib.util
import sys
import types

import pytest


@pytest.fixture(scope="session")
def alpaca_eval_package():
    """alpaca_eval with its metrics, processors and annotators imported. Its utils module imports
    `pkg_resources`, which setuptools 81 removed; it only uses it to compare package versions, which
    these tests never do."""
    with pytest.MonkeyPatch.context() as patch:
        if importlib.util.find_spec("pkg_resources") is None:
            from packaging.version import Version

            patch.setitem(sys.modules, "pkg_resources", types.SimpleNamespace(parse_version=Version))
        import alpaca_eval.annotators
        import alpaca_eval.metrics
        import alpaca_eval.metrics.glm_winrate
        import alpaca_eval.processors
    return alpaca_eval
