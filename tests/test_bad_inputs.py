"""Every case of the bad-input corpus (`tests/corpus`) through the real command: exit status 2, one
`simpo: error:` line that names what is wrong, no traceback, and nothing written."""

from __future__ import annotations

import pytest
from corpus import commands, pipelines, prompts, recipes, rows, sft
from helpers import REPO

from simpo.cli import main

CASES = [*recipes.CASES, *pipelines.CASES, *rows.CASES, *prompts.CASES, *commands.CASES, *sft.CASES]


def _files(folder) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def test_case_names_are_unique():
    names = [case.name for case in CASES]
    assert sorted(name for name in names if names.count(name) > 1) == []


@pytest.fixture(scope="module")
def no_progress_bars():
    """Progress bars (datasets' file reading, transformers' weight loading) are not messages; they
    would sit on stderr before the error line."""
    import datasets
    from transformers.utils import logging

    datasets.disable_progress_bars()
    logging.disable_progress_bar()
    yield
    datasets.enable_progress_bars()
    logging.enable_progress_bar()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input_gives_one_clear_line(case, tmp_path, monkeypatch, capsys, no_progress_bars):
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{repo}", str(REPO)))
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    before = _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    status = main([token.replace("{repo}", str(REPO)) for token in case.argv])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("simpo: error: "), err
    assert case.expect in lines[0]
    assert _files(tmp_path) == before
