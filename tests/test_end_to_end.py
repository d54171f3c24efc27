"""The main job end to end through the CLI, checked against independent computations."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score
from typer.testing import CliRunner

from stresslab.cli import app
from stresslab.data import load_split
from stresslab.data.base import to_float
from stresslab.models import build_model
from stresslab.models.weights import load_checkpoint
from tests.cli_helpers import FAST, run_ok


def _run(args: list[str]) -> str:
    return run_ok(args)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, fmnist_root: str) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "run"
    _run(
        [
            "run",
            "--quiet",
            "--out",
            str(out),
            "--data-root",
            fmnist_root,
            "--set",
            "probes=[evaluation, failures]",
            *FAST,
        ]
    )
    return out


@pytest.mark.slow
def test_quick_run_writes_everything(quick_run: Path) -> None:
    for f in [
        "report.html",
        "metrics.json",
        "config.resolved.yaml",
        "env.json",
        "history.json",
        "results/evaluation.json",
        "results/failures.json",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "DONE",
    ]:
        assert (quick_run / f).is_file(), f
    text = (quick_run / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    metrics = json.loads(text)
    assert {"evaluation.accuracy", "evaluation.macro_f1", "failures.n_errors"} <= set(metrics)
    env = json.loads((quick_run / "env.json").read_text())
    assert {"torch", "device", "seed", "python"} <= set(env)
    html = (quick_run / "report.html").read_text()
    assert "data:image/png;base64," in html and "Most confused pairs" in html


def test_metrics_agree_with_an_independent_evaluation(quick_run: Path, fmnist_root: str) -> None:
    ck = load_checkpoint(quick_run / "checkpoints" / "best.pt")
    split = load_split("fashion_mnist", root=fmnist_root, test_subset=300, train_subset=600)
    model = build_model(ck["model"]["name"], split.info, ck["model"]["args"])
    model.load_state_dict(ck["state_dict"])
    model.eval()
    with torch.no_grad():
        pred = model(to_float(split.test_x)).argmax(1).numpy()
    y = split.test_y.numpy()
    metrics = json.loads((quick_run / "metrics.json").read_text())
    assert metrics["evaluation.accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-9)
    present = np.unique(y)
    assert metrics["evaluation.macro_f1"] == pytest.approx(
        f1_score(y, pred, average="macro", labels=present, zero_division=0), abs=1e-9
    )
    assert metrics["failures.n_errors"] == int((pred != y).sum())


def test_report_rebuilds_from_the_run_directory_alone(quick_run: Path) -> None:
    before = (quick_run / "metrics.json").read_text()
    (quick_run / "report.html").unlink()
    _run(["report", str(quick_run)])
    assert (quick_run / "report.html").is_file()
    assert (quick_run / "metrics.json").read_text() == before


def test_existing_output_directory_is_refused(quick_run: Path, fmnist_root: str) -> None:
    res = CliRunner().invoke(
        app, ["run", "--quiet", "--out", str(quick_run), "--data-root", fmnist_root, *FAST]
    )
    assert res.exit_code == 2 and "already exists" in res.output


def test_checkpoint_run_skips_training(quick_run: Path, fmnist_root: str, tmp_path: Path) -> None:
    out = tmp_path / "probe-only"
    _run(
        [
            "run",
            "--quiet",
            "--out",
            str(out),
            "--data-root",
            fmnist_root,
            "--checkpoint",
            str(quick_run / "checkpoints" / "best.pt"),
            "--set",
            "probes=[evaluation]",
            *FAST,
        ]
    )
    assert not (out / "checkpoints" / "last.pt").exists()
    assert (out / "results" / "evaluation" / "loss_curves.png").is_file()  # history travels with best.pt
    a = json.loads((quick_run / "metrics.json").read_text())["evaluation.accuracy"]
    b = json.loads((out / "metrics.json").read_text())["evaluation.accuracy"]
    assert a == b
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--quiet",
            "--out",
            str(tmp_path / "x"),
            "--data-root",
            fmnist_root,
            "--checkpoint",
            str(quick_run / "checkpoints" / "best.pt"),
            "--set",
            "model.name=simple_cnn",
            "--set",
            "probes=[evaluation]",
            *FAST[:-2],
        ],
    )
    assert res.exit_code == 2 and "architecture" in res.output


def test_resume_continues_an_interrupted_run(quick_run: Path, tmp_path: Path) -> None:
    # Simulate a kill after training: drop the probe results, report and DONE marker.
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(quick_run, run)
    for f in ["results/failures.json", "report.html", "DONE", "metrics.json"]:
        (run / f).unlink()
    _run(["run", "--quiet", "--resume", str(run)])
    assert (run / "DONE").is_file()
    assert json.loads((run / "metrics.json").read_text()) == json.loads(
        (quick_run / "metrics.json").read_text()
    )


@pytest.mark.slow
def test_resume_without_a_validation_set(tmp_path: Path, fmnist_root: str) -> None:
    out = tmp_path / "noval"
    args = ["--set", "data.val_fraction=0", "--set", "probes=[evaluation]", *FAST]
    _run(["run", "--quiet", "--out", str(out), "--data-root", fmnist_root, *args])
    # Without validation the run keeps the last weights, here their average (the default
    # study averages): final.pt, while last.pt keeps the raw weights to resume from.
    assert json.loads((out / "training.json").read_text())["final_weights"] == "final.pt"
    before = json.loads((out / "metrics.json").read_text())["evaluation.accuracy"]
    (out / "results" / "evaluation.json").unlink()
    (out / "DONE").unlink()
    _run(["run", "--quiet", "--resume", str(out)])
    assert (out / "DONE").is_file()
    assert json.loads((out / "metrics.json").read_text())["evaluation.accuracy"] == before


def test_hostile_class_names_are_escaped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = np.array(["<script>alert(1)</script>", "a&b", '"quoted"'])
    y_train, y_test = np.arange(90) % 3, np.arange(30) % 3
    x_train = (rng.random((90, 8, 8)) * 50).astype(np.uint8)
    x_test = (rng.random((30, 8, 8)) * 50).astype(np.uint8)
    for x, y in ((x_train, y_train), (x_test, y_test)):
        for k in range(3):
            x[y == k, 2 * k : 2 * k + 3, 2 * k : 2 * k + 3] = 220
    f = tmp_path / "hostile.npz"
    np.savez(f, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=names)
    out = tmp_path / "run"
    _run(
        [
            "run",
            "--quiet",
            "--out",
            str(out),
            "--set",
            "data.dataset=npz",
            "--set",
            f"data.root={f}",
            "--set",
            "train.epochs=1",
            "--set",
            "model.name=simple_cnn",
            "--set",
            "probes=[evaluation, failures]",
        ]
    )
    html = (out / "report.html").read_text()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a&amp;b" in html


@pytest.mark.slow
def test_every_registered_probe_runs_in_one_quick_run(tmp_path: Path, fmnist_root: str) -> None:
    from stresslab.probes import PROBES

    out = tmp_path / "all"
    _run(
        [
            "run",
            "--quiet",
            "--preset",
            "quick",
            "--out",
            str(out),
            "--data-root",
            fmnist_root,
            *FAST,
            "--set",
            "data.test_subset=120",
            "--set",
            "train.epochs=1",
            "--set",
            "probes.adversarial={max_images: 40, convergence_check: false}",
            "--set",
            "probes.corruption={max_images: 40, severities: [1, 5]}",
            "--set",
            "probes.shortcut={max_images: 60, n_transplant: 40, refine_images: 2}",
        ]
    )
    assert (out / "DONE").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    for name in PROBES.names():
        assert (out / "results" / f"{name}.json").is_file(), name
        assert any(k.startswith(f"{name}.") for k in metrics), name
    html = (out / "report.html").read_text()
    for name in PROBES.names():
        assert f'id="probe-{name}"' in html


def test_list_shows_every_registry() -> None:
    from stresslab.attacks import ATTACKS
    from stresslab.attributions import ATTRIBUTIONS as methods
    from stresslab.corruptions import CORRUPTIONS
    from stresslab.data import DATASETS
    from stresslab.models import MODELS
    from stresslab.probes import PROBES

    lines = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in _run(["list"]).splitlines()}
    expected = {
        "datasets": DATASETS,
        "models": MODELS,
        "probes": PROBES,
        "attribution methods": methods,
        "attacks": ATTACKS,
        "corruptions": CORRUPTIONS,
    }
    assert set(lines) == set(expected)
    for kind, registry in expected.items():
        assert [n.strip() for n in lines[kind].split(",")] == registry.names(), kind
