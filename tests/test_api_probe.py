"""``stresslab.probe`` on a model in memory agrees with ``stresslab run --checkpoint`` on the same
arrays, whatever form the arrays take; ``run`` and ``load`` round-trip; the notebook view escapes."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from markupsafe import escape
from torch import nn

import stresslab
from stresslab.data import load_split
from stresslab.data.base import Split
from stresslab.errors import StresslabError
from stresslab.models import Classifier, build_model
from tests.cli_helpers import run_ok
from tests.data_factories import class_images

ARGS = {"widths": [4, 8], "fc": 16}
PROBES = ["evaluation", "failures", "calibration"]
NAMES = ("zero", "one", "two", "three")


class Trained:
    """A tiny custom_cnn trained through ``stresslab.run`` on an npz file, and the CLI's
    metrics when it stress-tests that model saved as a plain state dict."""

    def __init__(self, root: Path) -> None:
        train_x, train_y = class_images(240, 1, 12, 12, 4, seed=0)
        test_x, test_y = class_images(80, 1, 12, 12, 4, seed=1)
        # NHWC, NumPy's usual layout, as a user keeps arrays.
        self.x_test, self.y_test = test_x.transpose(0, 2, 3, 1).copy(), test_y
        self.npz = root / "tiny.npz"
        np.savez(
            self.npz,
            x_train=train_x.transpose(0, 2, 3, 1),
            y_train=train_y,
            x_test=self.x_test,
            y_test=test_y,
            class_names=np.array(NAMES),
        )
        data = {"dataset": "npz", "root": str(self.npz)}
        trained = stresslab.run(
            {"data": data, "model": {"name": "custom_cnn", "args": ARGS}, "probes": ["evaluation"]},
            overrides={"train.epochs": 2, "train.batch_size": 32, "train.lr": 0.01},
            out=root / "train",
        )
        assert trained.complete and len(trained.history) == 2
        self.split: Split = load_split("npz", root=str(self.npz))
        self.model = build_model("custom_cnn", self.split.info, ARGS)
        state = torch.load(root / "train" / "checkpoints" / "best.pt", weights_only=True)["state_dict"]
        self.model.load_state_dict(state)
        self.model.eval()
        torch.save(self.model.state_dict(), root / "model.pt")
        self.cli_dir = root / "cli"
        run_ok(
            [
                "run",
                "--quiet",
                "--out",
                str(self.cli_dir),
                "--data-root",
                str(self.npz),
                "--checkpoint",
                str(root / "model.pt"),
                "--set",
                "data.dataset=npz",
                "--set",
                "model.name=custom_cnn",
                "--set",
                f"model.args={json.dumps(ARGS)}",
                "--set",
                f"probes={json.dumps(PROBES)}",
            ]
        )
        self.cli_metrics: dict[str, float] = json.loads((self.cli_dir / "metrics.json").read_text())

    def parts(self) -> dict[str, Any]:
        """The CLI's own training and validation split, for the same temperature and warnings."""
        s = self.split
        return {"train": (s.train_x, s.train_y), "val": (s.val_x, s.val_y)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return Trained(tmp_path_factory.mktemp("api"))


def assert_same_metrics(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


class Plain(nn.Module):
    """The trained network without its Normalize layer: it expects normalized images."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.body, self.head = model.body, model.head

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.body(z), 1))


def test_probe_on_nhwc_uint8_numpy_gives_the_clis_metrics(trained: Trained) -> None:
    run = stresslab.probe(
        trained.model, (trained.x_test, trained.y_test), class_names=NAMES, probes=PROBES, **trained.parts()
    )
    assert run.complete and not run.failed_probes
    assert_same_metrics(run.metrics, trained.cli_metrics)
    assert list(run.results) == PROBES and run.history == []
    assert (
        run.results["failures"].tables[0].rows
        == stresslab.load(trained.cli_dir).results["failures"].tables[0].rows
    )


def test_probe_on_nchw_float_tensors_and_a_normalizing_model(trained: Trained) -> None:
    x = torch.from_numpy(trained.x_test).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(trained.y_test)
    run = stresslab.probe(trained.model, (x, y), class_names=NAMES, probes=PROBES, **trained.parts())
    assert_same_metrics(run.metrics, trained.cli_metrics)

    mean = trained.model.normalize.mean.flatten().tolist()
    std = trained.model.normalize.std.flatten().tolist()
    plain = Plain(trained.model)  # in training mode, as a new module is: probes run it in eval mode
    assert plain.training
    run = stresslab.probe(
        plain, (x, y), class_names=NAMES, probes=PROBES, normalize=(mean, std), **trained.parts()
    )
    assert_same_metrics(run.metrics, trained.cli_metrics)
    assert plain.training and plain.body.training  # left in the mode it came in
    trained.model.eval()


def test_probe_on_a_torch_dataset(trained: Trained) -> None:
    x = torch.from_numpy(trained.x_test).permute(0, 3, 1, 2).float() / 255.0
    test = torch.utils.data.TensorDataset(x, torch.from_numpy(trained.y_test))
    run = stresslab.probe(trained.model, test, class_names=NAMES, probes=PROBES, **trained.parts())
    assert_same_metrics(run.metrics, trained.cli_metrics)


def test_load_round_trips_and_save_keeps_the_report(trained: Trained, tmp_path: Path) -> None:
    run = stresslab.probe(
        trained.model,
        (trained.x_test, trained.y_test),
        class_names=NAMES,
        probes=PROBES,
        out=tmp_path / "run",
        **trained.parts(),
    )
    again = stresslab.load(tmp_path / "run")
    assert again.metrics == run.metrics and list(again.results) == list(run.results)
    for name, res in run.results.items():
        other = again.results[name]
        assert (other.metrics, other.tables, other.warnings, other.summary) == (
            res.metrics,
            res.tables,
            res.warnings,
            res.summary,
        )
    assert again.config == run.config and again.config.data.dataset == "in_memory"
    assert again.report_path.read_text() == run.report_path.read_text()
    # A CLI run reads back too, with the history of its checkpoint and its training run's.
    assert stresslab.load(trained.cli_dir).metrics == trained.cli_metrics
    assert len(stresslab.load(trained.cli_dir.parent / "train").history) == 2

    saved = run.save(tmp_path / "kept" / "report.html")
    assert saved.read_text() == run.report_path.read_text()
    copy = run.save(tmp_path / "copy")
    assert stresslab.load(copy).metrics == run.metrics
    with pytest.raises(StresslabError, match="already exists"):
        run.save(copy)


def test_without_out_the_run_lives_in_a_temporary_directory_as_long_as_the_run(trained: Trained) -> None:
    run = stresslab.probe(trained.model, (trained.x_test, trained.y_test), probes=["evaluation"])
    path = run.path
    assert (path / "report.html").is_file() and run.results["evaluation"].metrics["accuracy"] > 0
    del run
    gc.collect()
    assert not path.exists()


def test_nothing_is_printed_and_warnings_reach_the_run(
    trained: Trained, capfd: pytest.CaptureFixture[str]
) -> None:
    keep = trained.y_test != 3
    train = (trained.x_test[keep], trained.y_test[keep])  # class "three" is never trained on
    run = stresslab.probe(
        trained.model, (trained.x_test, trained.y_test), train=train, class_names=NAMES, probes=["evaluation"]
    )
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert any("three" in w for w in run.warnings)


def test_the_notebook_view_escapes_class_names(trained: Trained) -> None:
    hostile = ("<script>alert(1)</script>", "a & b", '"quoted"', "<img src=x onerror=alert(2)>")
    run = stresslab.probe(
        trained.model, (trained.x_test, trained.y_test), class_names=hostile, probes=["evaluation"]
    )
    html = run._repr_html_()
    assert 'class="card"' in html and "data:image/png;base64," in html
    assert run.report_path.name in html  # the link to the full report
    section = run.show("evaluation")._repr_html_()  # its per-class table names every class
    for name in hostile:
        assert name not in html and name not in section
        assert str(escape(name)) in section
    assert "<script" not in html and "<script" not in section  # no script in a notebook view
    with pytest.raises(StresslabError, match="no results of probe 'corruption'"):
        run.show("corruption")


def test_run_from_python_is_the_command(trained: Trained, tmp_path: Path) -> None:
    cfg = stresslab.RunConfig.model_validate(
        {
            "data": {"dataset": "npz", "root": str(trained.npz)},
            "model": {"name": "custom_cnn", "args": ARGS},
            "probes": PROBES,
        }
    )
    run = stresslab.run(cfg, checkpoint=trained.cli_dir.parent / "model.pt", out=tmp_path / "py")
    assert_same_metrics(run.metrics, trained.cli_metrics)
    with pytest.raises(StresslabError, match="give nothing else"):
        stresslab.run(cfg, resume=tmp_path / "py")
    with pytest.raises(StresslabError, match="probe\\(\\) again"):
        stresslab.run(resume=_probe_dir(trained, tmp_path))


def _probe_dir(trained: Trained, tmp_path: Path) -> Path:
    test = (trained.x_test, trained.y_test)
    stresslab.probe(trained.model, test, probes=["evaluation"], out=tmp_path / "p")
    (tmp_path / "p" / "DONE").unlink()
    return tmp_path / "p"


def test_a_loaded_run_gives_its_model_back(trained: Trained) -> None:
    model = stresslab.load(trained.cli_dir.parent / "train").model()
    assert not model.training
    want = trained.model.state_dict()
    got = model.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    x = torch.rand(3, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(model(x), trained.model(x))
