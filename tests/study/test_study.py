"""Studies end to end on tiny data: local and Ray backends, resume after a kill, a failing
arm, the report rebuilt from the directory, and study-file errors that name arm and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from stresslab.cli import app
from stresslab.errors import ConfigError
from stresslab.runs.saved_predictions import load_predictions
from stresslab.study import StudyDir, load_study, run_study
from stresslab.study.compare import mcnemar_exact

ARMS = {"baseline": {}, "smooth": {"train.label_smoothing": 0.1, "train.augment.cutmix_alpha": 1.0}}


def _study(tmp: Path, root: str, arms: dict[str, Any] | None = None, seeds: list[int] | None = None) -> Path:
    spec = {
        "name": "tiny",
        "base": {
            "data": {"dataset": "fashion_mnist", "root": root, "train_subset": 200, "test_subset": 100},
            "model": {"name": "custom_cnn", "args": {"widths": [4, 8], "fc": 16}},
            "train": {"epochs": 2, "batch_size": 64},
            "probes": {"evaluation": {}},
        },
        "set": ["threads=1"],
        "seeds": seeds or [0, 1],
        "arms": arms or ARMS,
    }
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def done_study(tmp_path_factory: pytest.TempPathFactory, fmnist_root: str) -> Path:
    tmp = tmp_path_factory.mktemp("study")
    outcome = run_study(_study(tmp, fmnist_root), out=tmp / "out")
    assert not outcome.failed
    return outcome.study_dir.path


def _runs(sdir: Path) -> list[Path]:
    return sorted(p for p in (sdir / "runs").glob("*/seed-*") if p.is_dir())


@pytest.mark.slow
def test_local_study_end_to_end(done_study: Path) -> None:
    runs = _runs(done_study)
    assert [p.relative_to(done_study).as_posix() for p in runs] == [
        "runs/baseline/seed-0", "runs/baseline/seed-1", "runs/smooth/seed-0", "runs/smooth/seed-1"
    ]  # fmt: skip
    for run in runs:
        for f in ("DONE", "report.html", "metrics.json", "predictions.npz", "checkpoints/best.pt"):
            assert (run / f).is_file(), (run, f)
        cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
        assert cfg["seed"] == int(run.name.split("-")[1]) and cfg["threads"] == 1
    smooth = yaml.safe_load((done_study / "runs/smooth/seed-0/config.resolved.yaml").read_text())
    assert smooth["train"]["label_smoothing"] == 0.1 and smooth["train"]["augment"]["cutmix_alpha"] == 1.0

    s = json.loads((done_study / "study.json").read_text())
    assert s["baseline"] == "baseline" and s["n_test_common"] == 100
    # Case counts and McNemar against a computation straight from the runs' predictions.
    for pair in s["cases"]["smooth"]["pairs"]:
        a = load_predictions(done_study / f"runs/baseline/seed-{pair['seed']}/predictions.npz")
        b = load_predictions(done_study / f"runs/smooth/seed-{pair['seed']}/predictions.npz")
        assert np.array_equal(a.index, b.index)
        fixed = int((~a.correct & b.correct).sum())
        broken = int((a.correct & ~b.correct).sum())
        assert (pair["fixed"], pair["broken"]) == (fixed, broken)
        assert pair["still_wrong"] == int((~a.correct & ~b.correct).sum())
        assert pair["mcnemar_p"] == pytest.approx(mcnemar_exact(fixed, broken))
    accs = [
        json.loads((done_study / f"runs/baseline/seed-{k}/metrics.json").read_text())["evaluation.accuracy"]
        for k in (0, 1)
    ]
    rec = s["arms"]["baseline"]["metrics"]["accuracy"]
    assert rec["mean"] == pytest.approx(np.mean(accs)) and rec["n"] == 2
    hard = set(s["hard_core"]["indices"])
    every = [load_predictions(p / "predictions.npz") for p in _runs(done_study)]
    assert hard == {int(i) for i in every[0].index[np.logical_and.reduce([~p.correct for p in every])]}
    assert s["arms"]["smooth"]["ensemble"]["n_members"] == 2
    html = (done_study / "report.html").read_text()
    for text in ("Arms x metrics", "McNemar", "ensemble of 2", "hard core", "data:image/png;base64,"):
        assert text in html


def test_report_rebuilds_from_the_study_directory(done_study: Path) -> None:
    before = json.loads((done_study / "study.json").read_text())
    (done_study / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(done_study)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (done_study / "report.html").is_file()
    assert json.loads((done_study / "study.json").read_text()) == before


@pytest.mark.slow
def test_ray_backend_gives_bit_equal_runs(done_study: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from stresslab.study.backends import RayBackend
    from stresslab.study.spec import Resources

    spec = yaml.safe_load((done_study / "study.resolved.yaml").read_text())
    spec["seeds"] = [0]  # two runs are enough to compare; Ray's start-up is the slow part
    study = tmp_path / "ray.yaml"
    study.write_text(yaml.safe_dump(spec))
    backend = RayBackend(Resources(cpus=1), num_cpus=2, object_store_memory=100 * 1024**2)
    outcome = run_study(study, out=tmp_path / "ray", backend=backend, report=False)
    assert not outcome.failed and len(outcome.records) == 2
    for other in _runs(tmp_path / "ray"):
        run = done_study / other.relative_to(tmp_path / "ray")
        metrics = json.loads((run / "metrics.json").read_text())
        assert json.loads((other / "metrics.json").read_text()) == metrics
        a, b = load_predictions(run / "predictions.npz"), load_predictions(other / "predictions.npz")
        assert np.array_equal(a.probs, b.probs) and np.array_equal(a.index, b.index)


@pytest.mark.slow
def test_killed_study_resumes(done_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = done_study / "study.resolved.yaml"
    out = tmp_path / "killed"

    def kill(rec: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(study, out=out, on_run_done=kill)
    sd = StudyDir(out)
    assert sd.state("baseline", 0) == "done" and sd.state("smooth", 0) == "pending"
    first_done = (sd.run_dir("baseline", 0) / "DONE").stat().st_mtime_ns

    # Kill the next run in the middle of its second epoch: it keeps last.pt of epoch 1.
    import stresslab.train.loop as loop

    calls = {"n": 0}
    real = loop.evaluate

    def dies_on_second_epoch(*args: Any, **kw: Any) -> tuple[float, float]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(loop, "evaluate", dies_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_study(resume=out)
    monkeypatch.setattr(loop, "evaluate", real)
    assert sd.state("smooth", 0) == "partial"
    assert (sd.run_dir("smooth", 0) / "checkpoints/last.pt").is_file()
    assert not (sd.run_dir("smooth", 0) / "history.json").exists()

    outcome = run_study(study, resume=out)  # the same study file is accepted
    assert not outcome.failed
    redone = sorted((r["arm"], r["seed"]) for r in outcome.records)
    assert redone == [("baseline", 1), ("smooth", 0), ("smooth", 1)]
    assert (sd.run_dir("baseline", 0) / "DONE").stat().st_mtime_ns == first_done
    for run in _runs(done_study):  # the resumed runs equal uninterrupted ones
        a = load_predictions(run / "predictions.npz")
        b = load_predictions(out / run.relative_to(done_study) / "predictions.npz")
        assert np.array_equal(a.probs, b.probs)
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_failing_arm_is_reported_and_the_others_finish(fmnist_root: str, tmp_path: Path) -> None:
    arms = {"baseline": {}, "diverges": {"train.optimizer": "sgd", "train.lr": 1.0e30}}
    path = _study(tmp_path, fmnist_root, arms=arms, seeds=[0])
    out = ["--out", str(tmp_path / "o"), "--workers", "2"]  # two spawned worker processes
    res = CliRunner().invoke(app, ["study", "--quiet", str(path), *out])
    assert res.exit_code == 1
    assert "diverges" in res.output and "TrainingDiverged" in res.output
    sd = StudyDir(tmp_path / "o")
    assert sd.state("baseline", 0) == "done" and sd.state("diverges", 0) == "failed"
    s = json.loads(sd.summary.read_text())
    failed = [r for r in s["runs"] if r["state"] == "failed"]
    assert [r["arm"] for r in failed] == ["diverges"] and "TrainingDiverged" in failed[0]["error"]
    html = sd.report.read_text()
    assert "1 failed" in html and "TrainingDiverged" in html


def _write(tmp_path: Path, spec: dict[str, Any]) -> Path:
    path = tmp_path / "bad.yaml"
    base = {"data": {"dataset": "fashion_mnist"}, "train": {"epochs": 1}, "probes": {"evaluation": {}}}
    path.write_text(yaml.safe_dump({"base": base, "seeds": [0], **spec}))
    return path


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"arms": {"a": {}, "ls": {"train.label_smoothng": 0.1}}},
         ["arm 'ls'", "train.label_smoothng", "unknown key"]),
        ({"arms": {"a": {}, "lr": {"train.lr": -1}}}, ["arm 'lr'", "train.lr"]),
        ({"arms": {"m": {"model.args.widthz": [8]}}}, ["arm 'm'", "model.args", "widthz"]),
        ({"arms": {"p": {"probes.evaluation.nope": 1}}}, ["arm 'p'", "probes.evaluation", "nope"]),
        ({"arms": {"s": {"seed": 3}}}, ["arm 's'", "seed"]),
        ({"arms": {"a": {}}, "compare_to": "b"}, ["compare_to", "'b'"]),
        ({"arms": {"a": {}}, "seedz": [1]}, ["seedz"]),
        ({"arms": {"a b": {}}}, ["arm 'a b'"]),
        ({"grid": {"train.lr": 0.1}}, ["grid", "train.lr"]),
        ({"arms": {"a": {}}, "set": ["train.epochs"]}, ["train.epochs", "key=value"]),
    ],
)  # fmt: skip
def test_study_file_errors_name_the_file_arm_and_key(
    tmp_path: Path, spec: dict[str, Any], words: list[str]
) -> None:
    path = _write(tmp_path, spec)
    with pytest.raises(ConfigError) as e:
        load_study(path)
    message = str(e.value)
    for w in [*words] + ([str(path)] if "set" not in spec else []):
        assert w in message, message


def test_grid_becomes_named_arms_and_nothing_runs_before_validation(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"grid": {"model.args.filters": [[8], [8, 16]], "train.epochs": [1, 2]}, "base": {
            "model": {"name": "configurable_cnn"}, "probes": {"evaluation": {}}}},
    )  # fmt: skip
    spec = load_study(path)
    assert list(spec.arms) == ["filters=8,epochs=1", "filters=8,epochs=2", "filters=8-16,epochs=1",
                               "filters=8-16,epochs=2"]  # fmt: skip
    assert spec.compare_to == "filters=8,epochs=1"
    cfg = spec.config("filters=8-16,epochs=2", 0)
    assert list(cfg.model.args["filters"]) == [8, 16] and cfg.train.epochs == 2
    bad = _write(tmp_path, {"arms": {"ok": {}, "bad": {"train.epochs": -1}}})
    with pytest.raises(ConfigError):
        run_study(bad, out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).parents[2].glob("studies/*.yaml")), ids=lambda p: p.name
)
def test_ready_made_study_files_validate(path: Path) -> None:
    spec = load_study(path)
    assert spec.compare_to in spec.arms and len(spec.seeds) >= 2


@pytest.mark.slow
def test_grid_study_reports_cost_and_pareto_front(fmnist_root: str, tmp_path: Path) -> None:
    from stresslab.data import load_split
    from stresslab.models import build_model, model_summary

    path = _study(tmp_path, fmnist_root, seeds=[0])
    spec = yaml.safe_load(path.read_text())
    spec.pop("arms")
    spec["grid"] = {"model.args.fc": [8, 32]}
    spec["base"]["train"]["epochs"] = 1
    path.write_text(yaml.safe_dump(spec))
    outcome = run_study(path, out=tmp_path / "grid")
    assert not outcome.failed
    s = json.loads((tmp_path / "grid/study.json").read_text())
    rows = s["grid"]["rows"]
    assert {r["arm"] for r in rows} == {"fc=8", "fc=32"}
    assert rows[0]["accuracy"] >= rows[1]["accuracy"]
    assert any(r["pareto"] for r in rows)
    info = load_split("fashion_mnist", root=fmnist_root, train_subset=200, test_subset=100).info
    for r in rows:
        model = build_model("custom_cnn", info, {"widths": [4, 8], "fc": r["values"]["model.args.fc"]})
        summary = model_summary(model, info)
        assert r["params"] == summary["params"]
        assert r["flops"] == 2 * summary["macs"]  # FlopCounterMode: one multiply-add = 2 FLOPs
    assert (tmp_path / "grid/figures/pareto.png").is_file()
    assert "Grid: accuracy and cost" in (tmp_path / "grid/report.html").read_text()


def test_gallery_images_and_gradcam_follow_the_runs(done_study: Path) -> None:
    from stresslab.study.gallery import gradcam_maps, test_images

    sd = StudyDir(done_study)
    run = sd.run_dir("smooth", 1)
    preds = load_predictions(run / "predictions.npz")
    wanted = [int(i) for i in preds.index[:5]]
    images = test_images(sd, run, wanted)
    assert sorted(images) == sorted(wanted) and sd.images.is_file()
    batch = np.stack([images[i] for i in wanted])
    maps, pred, conf = gradcam_maps(run, batch)
    assert maps.shape == (5, 28, 28) and bool((maps >= 0).all())
    assert np.array_equal(pred, preds.preds[:5])  # the checkpoint reproduces the stored predictions
    np.testing.assert_allclose(conf, preds.probs[:5].max(1), rtol=1e-4)


def test_a_study_chooses_probes_by_the_same_rule_as_a_run(tmp_path: Path) -> None:
    base = {"data": {"dataset": "fashion_mnist"}, "train": {"epochs": 1}}
    spec = {
        "base": base,
        "preset": "quick",
        "seeds": [0],
        "set": ["probes={evaluation: {}, failures: {}}", "probes.failures.threshold=0.8"],
        "arms": {
            "named": {},
            "listed": {"probes": ["evaluation"]},
            "dotted": {"probes.evaluation.top_pairs": 3},
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = load_study(path)
    assert study.config("named", 0).probes == {"evaluation": {}, "failures": {"threshold": 0.8}}
    assert study.config("listed", 0).probes == {"evaluation": {}}
    assert study.config("dotted", 0).probes == {
        "evaluation": {"top_pairs": 3},
        "failures": {"threshold": 0.8},
    }
