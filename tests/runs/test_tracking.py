"""Experiment trackers: TensorBoard event files and MLflow runs written, then read back with
the libraries' own readers; the hook that keeps a run going when a tracker fails; the error
that names the extra to install."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stresslab.errors import ConfigError
from stresslab.runs.config import RunConfig, validate
from stresslab.runs.directory import RunDir
from stresslab.runs.tracking import Tracking, check_trackers, flat_config, track
from tests.cli_helpers import FAST, invoke, run_ok

HISTORY = [
    {"epoch": 1, "train_loss": 1.5, "val_acc": 0.5, "lr": 0.01},
    {"epoch": 2, "train_loss": 0.9, "val_acc": 0.75, "lr": 0.005},
]
METRICS = {"evaluation.accuracy": 0.8125, "calibration.ece": 0.03, "evaluation.n": 3}


def fake_run(root: Path, name: str = "r1") -> RunDir:
    """A finished run directory: history, metrics, report, config and one figure."""
    run = RunDir(root / "runs" / name)
    (run.results / "evaluation").mkdir(parents=True)
    run.history.write_text(json.dumps(HISTORY))
    run.metrics.write_text(json.dumps(METRICS))
    run.report.write_text("<html>report</html>")
    run.config.write_text("seed: 0\n")
    Image.new("RGB", (30, 20), (255, 0, 0)).save(run.results / "evaluation" / "confusion.png")
    return run


def config(**tracking: Any) -> RunConfig:
    return RunConfig.model_validate({"train": {"lr": 0.01}, "tracking": tracking})


class Recorder:
    name = "recorder"

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if what == self.fail_on:
            raise RuntimeError("tracker down")

    def log_epoch(self, record: dict[str, float]) -> None:
        self._call("epoch")

    def finish(self, run: RunDir, metrics: dict[str, float]) -> None:
        self._call("finish")

    def close(self, status: str) -> None:
        self._call(f"close:{status}")


def test_a_failing_tracker_is_dropped_and_the_others_go_on(tmp_path: Path, caplog: Any) -> None:
    broken, fine = Recorder(fail_on="epoch"), Recorder()
    tracking = Tracking([broken, fine])
    tracking.on_epoch(HISTORY[0])
    tracking.on_epoch(HISTORY[1])
    run = fake_run(tmp_path)
    tracking.finish(run, METRICS)
    tracking.close("FINISHED")
    assert broken.calls == ["epoch"] and "tracking failed while logging an epoch" in caplog.text
    assert fine.calls == ["epoch", "epoch", "finish", "close:FINISHED"]
    # A run whose probes failed (it has FAILED) is closed as failed.
    run.failed.write_text("{}")
    failed = Recorder()
    tracking = Tracking([failed])
    tracking.finish(run, METRICS)
    tracking.close("FINISHED")
    assert failed.calls == ["finish", "close:FAILED"]


def test_track_closes_as_failed_when_the_run_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr("stresslab.runs.tracking.session.start_tracking", lambda cfg, run: Tracking([rec]))
    with pytest.raises(ValueError), track(config(), fake_run(tmp_path)):
        raise ValueError("boom")
    assert rec.calls == ["close:FAILED"]


def test_flat_config_joins_keys_and_leaves_tracking_out() -> None:
    flat = flat_config(config(mlflow=True, group="g"))
    assert flat["train.lr"] == 0.01 and flat["train.augment.hflip"] is False
    assert flat["model.source"] == "null" and json.loads(str(flat["probes.explain"])) == {}
    assert not any(k.startswith("tracking") for k in flat)
    # Group and run names become folder names: no slashes, quotes or leading dots.
    assert validate({"tracking": {"group": "study 1: arm=mixup"}}).tracking.group == "study 1: arm=mixup"
    for bad in ("a/b", "it's", ".hidden", ""):
        with pytest.raises(ConfigError, match="tracking.group"):
            validate({"tracking": {"group": bad}})


def test_a_missing_library_is_named_before_the_run_starts(
    tmp_path: Path, fmnist_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"tracking.mlflow is on .*pip install 'stresslab\[mlflow\]'"):
        check_trackers(config(mlflow=True).tracking)
    with pytest.raises(ConfigError, match=r"pip install 'stresslab\[tensorboard\]'"):
        check_trackers(config(tensorboard=True).tracking)
    check_trackers(config().tracking)  # both off: nothing imported
    out = tmp_path / "run"
    res = invoke(["run", "--quiet", "--out", str(out), "--data-root", fmnist_root, *FAST, "--mlflow"])
    assert res.exit_code == 2 and "stresslab[mlflow]" in res.output, res.output
    assert not out.exists()


def test_tensorboard_events_read_back(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from stresslab.runs.tracking.tensorboard import TensorBoardTracker, tensorboard_dir

    run = fake_run(tmp_path)
    cfg = config(tensorboard=True)
    tracker = TensorBoardTracker(cfg, run)
    for record in HISTORY:
        tracker.log_epoch(record)
    tracker.finish(run, METRICS)
    tracker.close("FINISHED")
    assert tracker.logdir == run.path / "tensorboard"

    events = EventAccumulator(str(tracker.logdir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("epoch/val_acc")] == [(1, 0.5), (2, 0.75)]
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("evaluation/accuracy")] == [(2, 0.8125)]
    (image,) = events.Images("evaluation/confusion")
    assert (image.width, image.height, image.step) == (30, 20, 2)
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["train.lr"].number_value == 0.01 and hparams["train.optimizer"].string_value == "adam"

    # A group puts each run in its own folder under one group folder beside the runs.
    grouped = config(tensorboard=True, group="study-a", run_name="baseline-seed0").tracking
    assert tensorboard_dir(grouped, run) == tmp_path / "runs" / "tensorboard" / "study-a" / "baseline-seed0"


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    mlflow = pytest.importorskip("mlflow")
    # Set and then removed, so whatever the tracker sets is undone after the test.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "x")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    return mlflow


def test_mlflow_run_read_back(tmp_path: Path, mlflow_env: Any) -> None:
    from mlflow.tracking import MlflowClient

    from stresslab.runs.tracking.mlflow import MlflowTracker

    run = fake_run(tmp_path)
    tracker = MlflowTracker(config(mlflow=True, experiment="lab"), run)
    for record in HISTORY:
        tracker.log_epoch(record)
    tracker.finish(run, METRICS)
    tracker.close("FINISHED")
    # The default store: a file store beside the run directories.
    assert tracker.uri == (tmp_path / "runs" / "mlruns").as_uri()
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"

    client = MlflowClient(tracking_uri=tracker.uri)
    got = client.get_run(tracker.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "r1"
    assert client.get_experiment(got.info.experiment_id).name == "lab"
    assert got.data.params["train.lr"] == "0.01" and got.data.params["data.dataset"] == "fashion_mnist"
    assert got.data.metrics["evaluation.accuracy"] == 0.8125 and got.data.metrics["evaluation.n"] == 3
    history = client.get_metric_history(tracker.run_id, "epoch/val_acc")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.75)]
    assert {a.path for a in client.list_artifacts(tracker.run_id)} == {
        "report.html",
        "metrics.json",
        "config.resolved.yaml",
    }
    saved = json.loads((run.path / "tracking.json").read_text())["mlflow"]
    assert saved["run_id"] == tracker.run_id

    # A resumed run logs into the same MLflow run.
    again = MlflowTracker(config(mlflow=True, experiment="lab"), run)
    assert again.run_id == tracker.run_id
    assert client.get_run(tracker.run_id).info.status == "RUNNING"
    again.close("KILLED")
    assert client.get_run(tracker.run_id).info.status == "KILLED"


def test_a_tracker_that_cannot_start_stops_the_run_and_closes_the_others(
    tmp_path: Path, mlflow_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stresslab.runs.tracking import start_tracking
    from stresslab.runs.tracking.tensorboard import TensorBoardTracker

    closed: list[str] = []
    monkeypatch.setattr(TensorBoardTracker, "__init__", lambda self, cfg, run: None)
    monkeypatch.setattr(TensorBoardTracker, "close", lambda self, status: closed.append(status))
    cfg = config(tensorboard=True, mlflow=True, mlflow_uri="nope://nowhere")
    with pytest.raises(ConfigError, match="tracking.mlflow: cannot start an MLflow run at nope://nowhere"):
        start_tracking(cfg, fake_run(tmp_path))
    assert closed == ["FAILED"]


def test_mlflow_groups_nest_under_one_parent_run(tmp_path: Path, mlflow_env: Any) -> None:
    from mlflow.tracking import MlflowClient

    from stresslab.runs.tracking.mlflow import MlflowTracker

    uri = str(tmp_path / "store")  # a folder: a file store there
    ids = []
    for arm in ("baseline", "mixup"):
        cfg = config(mlflow=True, mlflow_uri=uri, group="study-1", run_name=arm)
        tracker = MlflowTracker(cfg, fake_run(tmp_path, arm))
        tracker.close("FINISHED")
        ids.append(tracker.run_id)
    client = MlflowClient(tracking_uri=Path(uri).resolve().as_uri())
    runs = [client.get_run(i) for i in ids]
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.info.run_name == "study-1" and parent.info.status == "FINISHED"
    assert [r.info.run_name for r in runs] == ["baseline", "mixup"]
    assert all(r.data.tags["stresslab.group"] == "study-1" for r in runs)


def test_a_run_with_both_trackers(tmp_path: Path, fmnist_root: str, mlflow_env: Any) -> None:
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "runs" / "r"
    args = ["run", "--quiet", "--out", str(out), "--data-root", fmnist_root, *FAST]
    run_ok([*args, "--set", "probes=[evaluation]", "--tensorboard", "--mlflow"])
    metrics = json.loads((out / "metrics.json").read_text())
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("epoch/train_loss")] == [1, 2]
    (accuracy,) = events.Scalars("evaluation/accuracy")
    assert accuracy.value == pytest.approx(metrics["evaluation.accuracy"])
    figures = sorted(p.relative_to(out / "results").with_suffix("").as_posix() for p in out.rglob("*.png"))
    assert "evaluation/confusion" in figures and sorted(events.Tags()["images"]) == figures

    saved = json.loads((out / "tracking.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=saved["uri"])
    got = client.get_run(saved["run_id"])
    assert saved["uri"] == (tmp_path / "runs" / "mlruns").as_uri()
    assert got.info.status == "FINISHED" and got.data.params["train.epochs"] == "2"
    assert got.data.metrics["evaluation.accuracy"] == pytest.approx(metrics["evaluation.accuracy"])
    assert len(client.get_metric_history(got.info.run_id, "epoch/val_acc")) == 2
