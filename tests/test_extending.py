"""A user's own probe runs in a run like a built-in one: its section, headline card, tables,
figures and warnings reach the report, which rebuilds without the probe's code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from stresslab.data.base import Split, to_float
from stresslab.models import build_model
from stresslab.models.weights import load_checkpoint
from stresslab.probes import Headline, Probe, ProbeContext, ProbeResult, Table, register_probe
from stresslab.runs import config as config_mod
from stresslab.runs import prepare as prepare_mod
from stresslab.runs.execute import execute
from tests.cli_helpers import registries_restored, run_ok


def _dark(x: torch.Tensor, quantile: float) -> torch.Tensor:
    """Images (N, C, H, W) whose mean brightness is at most the ``quantile`` of the set."""
    brightness = to_float(x).mean(dim=(1, 2, 3))
    return brightness <= brightness.quantile(quantile)


@pytest.fixture
def user_probe() -> Iterator[type[Probe]]:
    with registries_restored():

        @register_probe("brightness_bias")
        class BrightnessBias(Probe):
            """Accuracy on the darkest test images against the rest."""

            order = 5  # before evaluation (10)
            headlines = (Headline("dark_accuracy", "accuracy on the darkest {quantile:.0%}", percent=True),)

            def __init__(self, *, quantile: float = 0.5) -> None:
                if not 0 < quantile < 1:
                    raise ValueError(f"quantile must be in (0, 1), got {quantile}")
                self.quantile = quantile

            def run(self, ctx: ProbeContext) -> ProbeResult:
                p = ctx.predictions
                dark = _dark(ctx.split.test_x, self.quantile)
                dark_acc = float(p.correct[dark].float().mean())
                bright_acc = float(p.correct[~dark].float().mean())
                fig = Figure(figsize=(3, 2))
                fig.subplots().bar(["dark", "bright"], [dark_acc, bright_acc])
                res = ProbeResult(
                    metrics={"dark_accuracy": dark_acc, "bright_accuracy": bright_acc},
                    tables=[
                        Table(
                            "Accuracy by brightness",
                            ["images", "count", "accuracy"],
                            [["dark", int(dark.sum()), dark_acc], ["bright", int((~dark).sum()), bright_acc]],
                        )
                    ],
                    figures={"by_brightness": fig},
                    captions={"by_brightness": "Accuracy of dark and bright test images."},
                    warnings=["brightness is a crude proxy for exposure"],
                    summary=[f"Dark images: {dark_acc:.1%} accuracy, bright: {bright_acc:.1%}."],
                    data={"settings": {"quantile": self.quantile}},
                )
                return res

        yield BrightnessBias


def test_a_user_probe_runs_and_reaches_the_report(
    user_probe: type[Probe], tmp_path: Path, fmnist_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_data = prepare_mod.load_data

    def with_split_warning(cfg: config_mod.RunConfig) -> Split:
        split = load_data(cfg)
        split.warnings = ["the test set has 3 near-duplicates of training images"]  # type: ignore[attr-defined]
        return split

    monkeypatch.setattr(prepare_mod, "load_data", with_split_warning)
    cfg = config_mod.resolve(
        overrides=[
            f"data.root={fmnist_root}",
            "data.train_subset=300",
            "data.test_subset=200",
            "train.epochs=1",
            "model.args={widths: [8, 16], fc: 32}",
            "probes={evaluation: {}, brightness_bias: {quantile: 0.3}}",
        ]
    )
    out = tmp_path / "run"
    outcome = execute(cfg, out=out, show_progress=False)
    assert outcome.failed_probes == [] and (out / "DONE").is_file()
    assert outcome.warnings == ["the test set has 3 near-duplicates of training images"]

    # The user's metric agrees with an independent evaluation of the saved model.
    split = prepare_mod.load_data(cfg)
    ckpt = load_checkpoint(out / "checkpoints" / "best.pt")
    model = build_model(ckpt["model"]["name"], split.info, ckpt["model"]["args"])
    model.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        right = model.eval()(to_float(split.test_x)).argmax(1) == split.test_y
    dark = _dark(split.test_x, 0.3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["brightness_bias.dark_accuracy"] == pytest.approx(float(right[dark].float().mean()))
    assert (out / "results" / "brightness_bias" / "by_brightness.png").is_file()

    def check(html: str) -> None:
        assert '<a href="#probe-brightness_bias">' in html
        assert html.index('id="probe-brightness_bias"') < html.index('id="probe-evaluation"')  # order 5 < 10
        card = (
            f'{metrics["brightness_bias.dark_accuracy"]:.2%}</div><div class="l">accuracy on the darkest 30%'
        )
        assert card in html
        assert "Accuracy by brightness" in html and "Accuracy of dark and bright test images." in html
        top = html[html.index('id="warnings"') : html.index('class="cards"')]
        assert "the test set has 3 near-duplicates" in top and '<span class="tag">data</span>' in top
        assert "brightness is a crude proxy for exposure" in top

    check((out / "report.html").read_text())
    saved = json.loads((out / "warnings.json").read_text())
    assert saved == [{"source": "data", "message": "the test set has 3 near-duplicates of training images"}]


def test_the_report_of_a_user_probe_rebuilds_without_its_code(
    user_probe: type[Probe], tmp_path: Path, fmnist_root: str
) -> None:
    cfg = config_mod.resolve(
        overrides=[
            f"data.root={fmnist_root}",
            "data.train_subset=200",
            "data.test_subset=100",
            "train.epochs=0",
            "model.args={widths: [8], fc: 16}",
            "probes=[brightness_bias]",
        ]
    )
    out = tmp_path / "run"
    execute(cfg, out=out, show_progress=False)
    before = (out / "report.html").read_text()
    from stresslab.probes import PROBES

    PROBES._items.pop("brightness_bias")  # a reader without the probe's code
    (out / "report.html").unlink()
    run_ok(["report", str(out)])
    after = (out / "report.html").read_text()
    assert "accuracy on the darkest 50%" in after and "Accuracy by brightness" in after
    assert after == before
