"""The resume point: the newest complete checkpoint, past one a killed run left half written."""

from __future__ import annotations

import json
from types import SimpleNamespace

from simpo.training.checkpoints import resume_point


def _checkpoint(folder, state: bool = True, empty: str | None = None):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "optimizer.pt").write_bytes(b"" if empty == "optimizer.pt" else b"state")
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": int(folder.name.split("-")[1])}))


def test_incomplete_checkpoints_are_skipped_for_the_newest_complete_one(tmp_path, caplog):
    _checkpoint(tmp_path / "checkpoint-2")
    _checkpoint(tmp_path / "checkpoint-10")  # sorted by number, not by name: 10 is newer than 4
    _checkpoint(tmp_path / "checkpoint-12", empty="optimizer.pt")  # killed while writing the optimizer
    _checkpoint(tmp_path / "checkpoint-14", state=False)  # killed before trainer_state.json
    args = SimpleNamespace(resume_from_checkpoint=None, output_dir=str(tmp_path))
    assert resume_point(args) == str(tmp_path / "checkpoint-10")
    assert f"skipping {tmp_path / 'checkpoint-14'}: an incomplete checkpoint" in caplog.text
    assert f"skipping {tmp_path / 'checkpoint-12'}" in caplog.text


def test_explicit_choices_win(tmp_path):
    _checkpoint(tmp_path / "checkpoint-2")
    assert resume_point(SimpleNamespace(resume_from_checkpoint="false", output_dir=str(tmp_path))) is None
    named = str(tmp_path / "checkpoint-2")
    assert resume_point(SimpleNamespace(resume_from_checkpoint=named, output_dir=str(tmp_path / "elsewhere"))) == named
    assert resume_point(SimpleNamespace(resume_from_checkpoint="true", output_dir=str(tmp_path / "none-yet"))) is None


def test_a_trainer_state_of_the_wrong_shape_is_not_a_complete_checkpoint(tmp_path, caplog):
    _checkpoint(tmp_path / "checkpoint-2")
    for step, text in ((4, "[1, 2]"), (6, '{"global_step": "six"}'), (8, '{"steps": 8}'), (10, '{"global_step": 10')):
        _checkpoint(tmp_path / f"checkpoint-{step}", state=False)
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(text)
    assert resume_point(SimpleNamespace(resume_from_checkpoint=None, output_dir=str(tmp_path))) == str(tmp_path / "checkpoint-2")
    assert all(f"skipping {tmp_path / f'checkpoint-{step}'}" in caplog.text for step in (4, 6, 8, 10))
