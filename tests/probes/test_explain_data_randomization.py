"""The data randomization test (Adebayo et al., 2018): it flags a map that ignores the model
(a fixed edge detector) and passes Grad-CAM on a tiny trained model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.attributions.base import Attribution
from stresslab.attributions.gradcam import GradCam
from stresslab.data.base import Split
from stresslab.errors import ConfigError
from stresslab.probes.base import ProbeContext, ProbeResult, build_probe
from stresslab.probes.explain.cases import CaseChoice, select_cases
from stresslab.probes.explain.compute import Explained, compute, prepare_methods
from stresslab.probes.explain.data_randomization import (
    DataRandomization,
    DataRandomizationSettings,
    data_randomization_test,
    permuted_labels,
)
from stresslab.probes.explain.data_randomization_present import present_data_randomization
from stresslab.probes.explain.probe import ExplainProbe
from stresslab.probes.explain.settings import ExplainSettings
from stresslab.probes.predictions import Predictions
from stresslab.train.config import TrainConfig
from stresslab.train.loop import train
from tests.cli_helpers import FAST, run_ok
from tests.conftest import make_split
from tests.probes.test_explain_probe import Net


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SobelEdges(Attribution):
    """The image's Sobel gradient magnitude: an "explanation" that never looks at the model."""

    label = "Sobel edges"
    gradient_based = False

    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
        gray = x.mean(dim=1, keepdim=True)
        gx = F.conv2d(gray, k.view(1, 1, 3, 3), padding=1)
        gy = F.conv2d(gray, k.T.reshape(1, 1, 3, 3), padding=1)
        return (gx**2 + gy**2).sqrt()


RECIPE = TrainConfig(epochs=20, batch_size=32, lr=0.01, amp="off", channels_last="off")


def _trained() -> tuple[ProbeContext, Split]:
    split = make_split(n_train=96, n_val=16, n_test=60, size=12, classes=3, seed=0)
    torch.manual_seed(0)
    model = Net(split.info)
    train(model, split, RECIPE, device=torch.device("cpu"), seed=0)
    model.zero_grad(set_to_none=True)
    model.eval()
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=64)
    ctx = ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=64,
        predictions=preds,
        val_predictions=preds,
        train_config=RECIPE,
    )
    return ctx, split


def _explained(ctx: ProbeContext) -> tuple[Explained, dict[str, Attribution]]:
    choice = CaseChoice(n_high_confidence=4, n_uncertain=2, min_confidence=0.9, n_correct_per_class=4)
    cases, _, _ = select_cases(ctx, choice)
    methods, _ = prepare_methods(ctx, {"gradcam": GradCam(), "sobel": SobelEdges()})
    return compute(ctx, cases, methods, ExplainSettings(curve_steps=4, random_maps=1)), methods


def test_data_randomization_flags_an_edge_detector_and_passes_gradcam() -> None:
    ctx, _ = _trained()
    assert float((ctx.predictions.preds == ctx.predictions.labels).float().mean()) > 0.9
    explained, methods = _explained(ctx)
    state = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    found = data_randomization_test(ctx, explained, methods, DataRandomizationSettings(epochs=20))
    # The model itself is untouched: the test trains a copy.
    assert all(torch.equal(v, state[k]) for k, v in ctx.model.state_dict().items())
    assert not ctx.model.training and all(p.grad is None for p in ctx.model.parameters())
    n = len(explained.cases)
    assert found.spearman["sobel"].shape == (n,) and found.maps["gradcam"].shape == (n, 12, 12)
    assert found.median("sobel") == pytest.approx(1.0)  # the same map whatever the model learned
    median = found.median("gradcam")
    assert median is not None and median < 0.3
    assert found.passed("sobel") is False and found.passed("gradcam") is True
    assert found.run_epochs == 20 and found.n_train == 96 and 1 / 3 < found.fit <= 1.0

    res = ProbeResult()
    present_data_randomization(res, found, explained, cases_per_figure=3)
    m = res.metrics
    assert m["sobel.data_randomization_pass"] == 0.0 and m["gradcam.data_randomization_pass"] == 1.0
    assert m["sobel.data_randomization_spearman"] == pytest.approx(1.0)
    assert m["data_randomization.epochs"] == 20 and m["data_randomization.train_accuracy"] == found.fit
    assert next(w for w in res.warnings if "fails the data randomization test" in w).startswith("Sobel edges")
    assert not any(w.startswith("Grad-CAM fails") for w in res.warnings)
    table = res.tables[-1]
    assert table.title == "Data randomization test"
    assert [r[-1] for r in table.rows] == ["pass", "fail: maps barely change"]
    assert "permuted" in table.caption and "Adebayo" in table.caption
    assert "Sobel edges fail" in res.summary[-1] and "Grad-CAM pass" in res.summary[-1]
    assert "data_randomization" in res.figures and "data_randomization" in res.captions
    record = res.data["data_randomization"]
    assert [c["index"] for c in record["cases"]] == [c.index for c in explained.cases]
    assert record["methods"]["sobel"]["passed"] is False and record["epochs"] == 20


def test_permuted_labels_keep_images_and_class_counts() -> None:
    split = make_split(n_train=30, n_val=6, n_test=9)
    out = permuted_labels(split, torch.Generator().manual_seed(0))
    assert torch.equal(out.train_x, split.train_x) and torch.equal(out.test_y, split.test_y)
    assert torch.equal(out.train_y.bincount(), split.train_y.bincount())
    assert not torch.equal(out.train_y, split.train_y) and len(out.val_y) == 0


def test_median_and_verdict_leave_undefined_cases_out() -> None:
    found = DataRandomization(DataRandomizationSettings(1, threshold=0.45), run_epochs=3, fit=0.5, n_train=10)
    found.spearman["m"] = torch.tensor([0.1, 0.3, float("nan"), 0.5, 0.9], dtype=torch.float64)
    found.spearman["flat"] = torch.full((3,), float("nan"), dtype=torch.float64)
    assert found.median("m") == pytest.approx(0.4) and found.mean("m") == pytest.approx(0.45)
    assert found.passed("m") is True and found.median("flat") is None and found.passed("flat") is None


def test_settings_are_checked_and_the_test_needs_a_recipe() -> None:
    assert DataRandomizationSettings.parse(None) is None
    assert DataRandomizationSettings.parse({"epochs": 2}) == DataRandomizationSettings(2, 0.5)
    for bad, key in (
        ({"epochs": 0}, "epochs"),
        ({"epoch": 2}, "epoch"),
        ({"epochs": 1, "threshold": 2}, "threshold"),
    ):
        with pytest.raises(ConfigError, match=rf"probes\.explain\.data_randomization\.{key}"):
            build_probe("explain", {"data_randomization": bad})
    ctx, _ = _trained()
    ctx.train_config = None
    probe = ExplainProbe(
        methods=["gradcam"],
        n_high_confidence=1,
        n_uncertain=1,
        n_correct_per_class=1,
        curve_steps=4,
        random_maps=1,
        data_randomization={"epochs": 1},
    )
    res = probe.run(ctx)
    assert any("data randomization test was not run" in w for w in res.warnings)
    assert not any("data_randomization" in k for k in res.metrics)
    off = ExplainProbe(methods=["gradcam"], n_high_confidence=1, n_uncertain=1, curve_steps=4, random_maps=1)
    assert off.data_randomization is None


@pytest.mark.slow
def test_a_run_passes_its_recipe_to_the_data_randomization_test(tmp_path: Path, fmnist_root: str) -> None:
    out = tmp_path / "run"
    explain = (
        "probes={failures: {}, explain: {methods: [gradcam], n_high_confidence: 2, n_uncertain: 1, "
        "n_correct_per_class: 1, curve_steps: 4, random_maps: 1, data_randomization: {epochs: 1}}}"
    )
    run_ok(
        [
            "run",
            "--quiet",
            "--out",
            str(out),
            "--data-root",
            fmnist_root,
            *FAST,
            "--set",
            "train.epochs=1",
            "--set",
            explain,
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["explain.data_randomization.epochs"] == 1
        and metrics["explain.data_randomization.run_epochs"] == 1
    )
    assert "explain.gradcam.data_randomization_spearman" in metrics
    html = (out / "report.html").read_text()
    assert (
        "Data randomization test" in html
        and (out / "results" / "explain" / "data_randomization.png").is_file()
    )
