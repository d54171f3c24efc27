"""How a run fails: config mistakes leave nothing behind, later failures say why and can be
continued or replaced, a complete run is never replaced, a diverged training is flagged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stresslab.errors import TrainingDiverged
from stresslab.runs import execute as runner
from tests.cli_helpers import FAST, invoke, run_ok


def _args(out: Path, root: str, *extra: str) -> list[str]:
    return [
        "run",
        "--quiet",
        "--out",
        str(out),
        "--data-root",
        root,
        *FAST,
        "--set",
        "probes=[evaluation]",
        "--set",
        "train.epochs=1",
        *extra,
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("probes.evaluation={top_pair: 3}", "unknown setting"),
        ("probes.evaluation={top_pairs: 0}", "top_pairs must be >= 1"),
        ("probes={evaluation: {}, nope: {}}", "unknown probe 'nope'"),
        ("model.name=resnet99", "unknown model 'resnet99'"),
        ("data.dataset=mnist9", "unknown dataset 'mnist9'"),
        ("model.args={widths: [8], nope: 1}", "unknown setting"),
        ("device=gpu9", "device"),
    ],
)
def test_a_config_mistake_leaves_nothing_behind(
    tmp_path: Path, fmnist_root: str, override: str, message: str
) -> None:
    out = tmp_path / "run"
    res = invoke(_args(out, fmnist_root, "--set", override))
    assert res.exit_code == 2 and message in res.output, res.output
    assert not out.exists()


def test_missing_data_leaves_nothing_behind_and_the_fixed_rerun_works(
    tmp_path: Path, fmnist_root: str
) -> None:
    out = tmp_path / "run"
    res = invoke(_args(out, str(tmp_path / "missing.npz"), "--set", "data.dataset=npz"))
    assert res.exit_code == 2 and "missing.npz" in res.output and not out.exists(), res.output
    res = invoke(_args(out, fmnist_root, "--set", "probes.evaluation={top_pair: 3}"))
    assert res.exit_code == 2 and not out.exists()
    run_ok(_args(out, fmnist_root))  # the same --out, now fixed
    assert (out / "DONE").is_file()


def _diverge(*args: object, **kwargs: object) -> object:
    raise TrainingDiverged("loss became nan at epoch 1, step 3/10; no checkpoint was written")


def test_a_run_that_fails_later_says_why_and_resumes(
    tmp_path: Path, fmnist_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    monkeypatch.setattr(runner, "train", _diverge)
    res = invoke(_args(out, fmnist_root))
    assert res.exit_code == 2 and "loss became nan" in res.output
    failed = json.loads((out / "FAILED").read_text())
    assert failed["stage"] == "training"
    assert failed["error"].startswith("TrainingDiverged: loss became nan at epoch 1")
    assert "Traceback" in failed["traceback"]
    assert not (out / "DONE").exists()
    # The failed run's report says it failed, and why.
    run_ok(["report", str(out)])
    html = (out / "report.html").read_text()
    assert 'id="run-failed"' in html and "loss became nan at epoch 1" in html

    monkeypatch.undo()
    run_ok(["run", "--quiet", "--resume", str(out)])
    assert (out / "DONE").is_file() and not (out / "FAILED").exists()
    assert 'id="run-failed"' not in (out / "report.html").read_text()


def test_a_failed_run_is_replaced_by_a_new_run_with_the_same_out(
    tmp_path: Path, fmnist_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    monkeypatch.setattr(runner, "train", _diverge)
    assert invoke(_args(out, fmnist_root)).exit_code == 2
    (out / "results" / "stale.json").write_text("{}")
    monkeypatch.undo()
    run_ok(_args(out, fmnist_root))
    assert (out / "DONE").is_file() and not (out / "FAILED").exists()
    assert not (out / "results" / "stale.json").exists()  # nothing of the failed run is mixed in


def test_complete_and_unfinished_runs_are_never_replaced(tmp_path: Path, fmnist_root: str) -> None:
    out = tmp_path / "run"
    run_ok(_args(out, fmnist_root))
    before = (out / "metrics.json").read_bytes()
    res = invoke(_args(out, fmnist_root))
    assert res.exit_code == 2 and "complete run" in res.output
    killed = tmp_path / "killed"
    shutil.copytree(out, killed)
    (killed / "DONE").unlink()  # like a run killed before the end: neither DONE nor FAILED
    res = invoke(_args(killed, fmnist_root))
    assert res.exit_code == 2 and f"--resume {killed}" in res.output
    assert (out / "metrics.json").read_bytes() == before


def test_a_diverged_training_is_flagged_on_the_command_line_and_at_the_top_of_the_report(
    tmp_path: Path, fmnist_root: str
) -> None:
    # Adam at lr 1e4: the loss explodes to ~1e14 without a NaN, and training runs to the end.
    out = tmp_path / "run"
    output = run_ok(
        _args(
            out,
            fmnist_root,
            "--set",
            "train.optimizer=adam",
            "--set",
            "train.lr=1e4",
            "--set",
            "train.schedule=constant",
        )
    )
    assert "warning: training diverged" in output
    (record,) = json.loads((out / "warnings.json").read_text())
    assert record["source"] == "training" and "10x log(10)" in record["message"]
    html = (out / "report.html").read_text()
    top = html.index('id="warnings"')
    assert top < html.index('class="cards"') and html.index("training diverged") > top
    (out / "report.html").unlink()
    run_ok(["report", str(out)])  # the warning lives in the run directory
    assert "training diverged" in (out / "report.html").read_text()
