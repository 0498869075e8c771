"""The one-line errors' helpers: a JSON file read or refused naming itself, and options given twice."""

from __future__ import annotations

import os

import pytest

from simpo.errors import DataError, OptionParser, RecipeError, read_json


@pytest.mark.parametrize("content,expect", [
    (b'{"a": 1', "state.json (a test file): not valid JSON (Expecting ',' delimiter at line 1, column 8)"),
    (b"[1]", "state.json (a test file): holds a JSON array, not a JSON object"),
    (b"null", "state.json (a test file): holds null, not a JSON object"),
    (b"\xff\xfe{}", "state.json (a test file): not UTF-8 text"),
    (b"", "state.json (a test file): not valid JSON (Expecting value at line 1, column 1)"),
])
def test_a_json_file_that_is_not_what_it_claims_is_named(tmp_path, content, expect):
    (tmp_path / "state.json").write_bytes(content)
    with pytest.raises(DataError) as raised:
        read_json(tmp_path / "state.json", what="a test file")
    assert str(raised.value).startswith(f"{tmp_path / expect}") and "\n" not in str(raised.value)


def test_read_json_reads_and_raises_the_error_asked_for(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    assert read_json(tmp_path / "list.json", list) == [1, 2]
    with pytest.raises(RecipeError, match="missing.json: cannot be read"):
        read_json(tmp_path / "missing.json", error=RecipeError)
    with pytest.raises(RecipeError, match="cannot be read"):
        read_json(tmp_path, error=RecipeError)  # a folder


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode (tests run as root here)")
def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{}")
    path.chmod(0)
    with pytest.raises(DataError, match="state.json: cannot be read"):
        read_json(path)


@pytest.mark.parametrize("tokens,flag", [
    (["m", "--x", "1", "--x", "2"], "--x is given twice"),
    (["m", "--x=1", "--x", "2"], "--x is given twice"),
    (["m", "--long-name", "1", "--long", "2"], "--long-name is given twice (as --long)"),
    (["m", "--flag", "--flag"], "--flag is given twice"),
])
def test_an_option_given_twice_is_refused(tokens, flag):
    parser = OptionParser.of("simpo test", "model", [("--x", {"type": int}), ("--long-name", {"type": str})])
    parser.add_argument("--flag", action="store_true")
    parser.add_argument("--tag", action="append")
    with pytest.raises(RecipeError, match=flag.replace("(", r"\(").replace(")", r"\)")):
        parser.parse_args(tokens)
    assert parser.parse_args(["m", "--tag", "a", "--tag", "b", "--x", "-1"]).tag == ["a", "b"]  # append options collect
