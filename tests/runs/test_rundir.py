import json
import os
from pathlib import Path

import pytest

from stresslab.errors import StresslabError
from stresslab.files import atomic_write_bytes, atomic_write_json
from stresslab.runs.directory import RunDir


def test_atomic_write_leaves_old_file_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def boom(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # a kill between write and rename

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp file left


def test_json_is_strict(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "m.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": 2})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": 2}


def test_existing_output_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    RunDir.create(out)
    (out / "x").write_text("keep")
    with pytest.raises(StresslabError, match="already exists"):
        RunDir.create(out)
    assert (out / "x").read_text() == "keep"


def test_lock_is_exclusive_and_stale_locks_are_taken_over(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r")
    with run.lock(), pytest.raises(StresslabError, match="in use"), run.lock():
        pass
    (run.path / "run.lock").write_text("999999999")  # a killed process
    with run.lock():
        assert (run.path / "run.lock").read_text() == str(os.getpid())


def test_check_new_says_which_directories_may_receive_a_run(tmp_path: Path) -> None:
    assert RunDir.check_new(tmp_path / "missing") is False
    (tmp_path / "empty").mkdir()
    assert RunDir.check_new(tmp_path / "empty") is False
    run = RunDir.create(tmp_path / "r")
    run.config.write_text("seed: 0\n")
    with pytest.raises(StresslabError, match="unfinished run.*--resume"):
        RunDir.check_new(run.path)
    atomic_write_json(run.failed, {"stage": "training", "error": "boom"})
    assert RunDir.check_new(run.path) is True
    run.done.write_text("complete\n")
    with pytest.raises(StresslabError, match="complete run, which is never replaced"):
        RunDir.check_new(run.path)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_create_replaces_a_failed_run_unless_it_is_in_use(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r")
    run.config.write_text("seed: 0\n")
    (run.checkpoints / "last.pt").write_bytes(b"x")
    atomic_write_json(run.failed, {"stage": "training", "error": "boom"})
    (run.path / "run.lock").write_text(str(os.getpid()))  # a live process holds it
    with pytest.raises(StresslabError, match="in use"):
        RunDir.create(run.path)
    (run.path / "run.lock").unlink()
    again = RunDir.create(run.path)
    assert sorted(p.name for p in again.path.iterdir()) == ["checkpoints", "results"]
    assert not any(again.checkpoints.iterdir())
