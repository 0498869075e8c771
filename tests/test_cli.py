"""The command line: usage, a wrong command, and per-command help generated from the recipe keys."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import REPO

from simpo.cli import COMMANDS, main
from simpo.config.keys import markdown
from simpo.config.pipeline import SECTIONS


def test_usage_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert [name for name in COMMANDS if f"  {name} " in out] == list(COMMANDS)


def test_a_wrong_command_says_what_exists(capsys):
    assert main(["trian", "recipe.yaml"]) == 2
    assert capsys.readouterr().err == "simpo: error: unknown command 'trian'; did you mean 'train'? simpo --help lists the commands\n"


def test_version_help_and_help_command(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"simpo {version('simpo')}\n"
    assert main(["help", "binarize"]) == 0
    assert capsys.readouterr().out.startswith("usage: simpo binarize [RECIPE.yaml]")
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("usage: simpo COMMAND")


@pytest.mark.parametrize("command", ["generate", "annotate", "binarize", "evaluate"])
def test_stage_help_lists_each_key_with_its_default(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    for field in dataclasses.fields(SECTIONS[command]):
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{command}.{field.name} "))
        assert field.metadata["help"].split(". ")[0].rstrip(".") in line
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        assert f"default {'-' if default in (None, '') else default})" in line


def test_train_help_lists_simpo_and_trainer_keys(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  gamma_beta_ratio " in out and "(float; default -)" in out
    assert "  learning_rate " in out and "  logps_chunk_size " in out


def test_the_recipe_keys_doc_is_generated_from_the_same_fields():
    assert (REPO / "docs" / "recipe-keys.md").read_text() == markdown(), "regenerate: python -m simpo.config.keys > docs/recipe-keys.md"


@pytest.mark.parametrize("argv", [["--help"], ["binarize", "--help"]])
def test_a_closed_pipe_ends_quietly(argv):
    """`simpo train --help | head -1`: the reader goes away; no BrokenPipeError traceback, the status a
    shell gives a command ended by SIGPIPE."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "simpo", *argv], stdout=write, stderr=subprocess.PIPE, text=True, timeout=600)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")
