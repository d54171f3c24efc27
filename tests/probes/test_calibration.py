"""Calibration metrics against torchmetrics, scikit-learn and hand-computed cases; the probe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from stresslab.metrics.calibration import (
    adaptive_calibration_error,
    brier_score,
    calibration_summary,
    classwise_calibration_error,
    equal_mass_bins,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from stresslab.probes import build_probe
from stresslab.probes.base import ProbeContext
from stresslab.probes.calibration import CalibrationProbe
from stresslab.probes.predictions import Predictions
from tests.conftest import TinyNet, make_split

# Four samples, two classes: confidences 0.90 (right) and 0.92 (wrong) share bin 13 of 15,
# 0.78 (wrong) is alone in bin 11, 0.65 (right) alone in bin 9.
HAND_PROBS = torch.tensor([[0.90, 0.10], [0.08, 0.92], [0.78, 0.22], [0.35, 0.65]], dtype=torch.float64)
HAND_LABELS = torch.tensor([0, 0, 1, 1])


def _random(n: int = 500, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 3, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_and_mce_match_torchmetrics_on_random_logits(seed: int) -> None:
    logits, labels = _random(seed=seed)
    probs = logits.softmax(1)
    ref = multiclass_calibration_error(probs, labels, num_classes=10, n_bins=15, norm="l1")
    assert expected_calibration_error(probs, labels) == pytest.approx(float(ref), abs=1e-6)
    ref_max = multiclass_calibration_error(probs, labels, num_classes=10, n_bins=15, norm="max")
    assert maximum_calibration_error(probs, labels) == pytest.approx(float(ref_max), abs=1e-6)


def test_classwise_ece_matches_torchmetrics_binary_per_class() -> None:
    logits, labels = _random(n=400, k=4, seed=3)
    probs = logits.softmax(1)
    ref = np.mean(
        [
            float(binary_calibration_error(probs[:, k].contiguous(), (labels == k).long(), n_bins=15))
            for k in range(4)
        ]
    )
    assert classwise_calibration_error(probs, labels) == pytest.approx(ref, abs=1e-6)


def test_hand_computed_four_sample_case() -> None:
    # Bin 13: accuracy 1/2, confidence 0.91 -> gap 0.41, weight 1/2; bin 11: gap 0.78; bin 9: gap 0.35.
    assert expected_calibration_error(HAND_PROBS, HAND_LABELS) == pytest.approx(
        0.5 * 0.41 + 0.25 * 0.78 + 0.25 * 0.35
    )
    assert maximum_calibration_error(HAND_PROBS, HAND_LABELS) == pytest.approx(0.78)
    # Two equal-mass bins: {0.65 right, 0.78 wrong} gap |0.5 - 0.715|, {0.90, 0.92} gap |0.5 - 0.91|.
    assert adaptive_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=2) == pytest.approx(
        0.5 * 0.215 + 0.5 * 0.41
    )
    # Brier: sum over classes of squared error, averaged: (0.02 + 2*0.92^2 + 2*0.78^2 + 2*0.35^2) / 4.
    assert brier_score(HAND_PROBS, HAND_LABELS) == pytest.approx(
        (0.02 + 2 * 0.92**2 + 2 * 0.78**2 + 2 * 0.35**2) / 4
    )
    bins = reliability_bins(HAND_PROBS, HAND_LABELS)
    assert bins.count.tolist() == [0] * 9 + [1, 0, 1, 0, 2, 0]
    assert float(bins.accuracy[13]) == pytest.approx(0.5)
    assert float(bins.confidence[13]) == pytest.approx(0.91)
    torch.testing.assert_close(
        torch.tensor(
            multiclass_calibration_error(HAND_PROBS.float(), HAND_LABELS, num_classes=2, n_bins=15).item()
        ),
        torch.tensor(0.4875),
        atol=1e-6,
        rtol=0,
    )


def test_nll_and_brier_match_scikit_learn() -> None:
    logits, labels = _random(n=300, k=5, seed=4)
    probs = logits.double().softmax(1)
    assert negative_log_likelihood(logits, labels) == pytest.approx(
        log_loss(labels.numpy(), probs.numpy(), labels=list(range(5))), rel=1e-6
    )
    onehot = np.eye(5)[labels.numpy()]
    assert brier_score(probs, labels) == pytest.approx(float(((probs.numpy() - onehot) ** 2).sum(1).mean()))


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(true_t: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 10, generator=g) * 3
    # Labels drawn from softmax(logits / T): the NLL-optimal temperature is T itself.
    labels = torch.multinomial((logits / true_t).softmax(1), 1, generator=g).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)
    assert negative_log_likelihood(logits / true_t, labels) < negative_log_likelihood(logits, labels)


def test_edge_cases_give_defined_values() -> None:
    # Confidence exactly 1.0 lands in the last bin; all other bins are empty.
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(1 / 3)
    assert maximum_calibration_error(probs, labels) == pytest.approx(1 / 3)
    assert reliability_bins(probs, labels).count.tolist() == [0.0] * 14 + [3.0]
    # A wrong prediction with probability 0 on the label: NLL from logits stays finite.
    nll = negative_log_likelihood(torch.tensor([[200.0, -200.0]]), torch.tensor([1]))
    assert math.isfinite(nll) and nll == pytest.approx(400.0)
    # Empty and one-sample sets.
    empty = calibration_summary(torch.empty(0, 3), torch.empty(0, dtype=torch.long))
    assert all(v == 0.0 for v in empty.values())
    one = calibration_summary(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    assert all(math.isfinite(v) for v in one.values())
    assert one["mean_confidence_wrong"] == 0.0
    # More bins than samples: equal-mass bins hold one sample each and the rest are empty.
    mass = equal_mass_bins(torch.tensor([0.9, 0.6]), torch.tensor([1.0, 0.0]), n_bins=5)
    assert mass.count.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert adaptive_calibration_error(HAND_PROBS[:2], HAND_LABELS[:2], n_bins=15) == pytest.approx(
        (0.1 + 0.92) / 2
    )
    # Temperature: empty set -> 1; all right and separable -> clipped to the lower bound, finite.
    assert fit_temperature(torch.empty(0, 3), torch.empty(0, dtype=torch.long)) == 1.0
    t = fit_temperature(torch.tensor([[5.0, 0.0], [0.0, 5.0]]), torch.tensor([0, 1]), bounds=(0.05, 20.0))
    assert t == pytest.approx(0.05)


def _ctx(n_val: int = 200, scale: float = 1.0) -> ProbeContext:
    split = make_split(n_test=150, n_val=max(n_val, 1), classes=3)
    torch.manual_seed(1)
    model = TinyNet(split.info)
    with torch.no_grad():
        model.head.weight.mul_(scale)  # type: ignore[operator]
    preds = Predictions.compute(model, split.test_x, split.test_y, split.test_index, batch_size=64)
    vpreds = Predictions.compute(
        model, split.val_x[:n_val], split.val_y[:n_val], split.val_index[:n_val], batch_size=64
    )
    return ProbeContext(
        model=model,
        split=split,
        device=torch.device("cpu"),
        seed=0,
        batch_size=64,
        predictions=preds,
        val_predictions=vpreds,
    )


def test_probe_reports_metrics_figures_and_temperature() -> None:
    ctx = _ctx(scale=30.0)  # a sharpened, overconfident head
    res = build_probe("calibration", {}).run(ctx)
    logits, labels = ctx.predictions.logits, ctx.predictions.labels
    assert res.metrics["ece"] == pytest.approx(expected_calibration_error(logits.softmax(1), labels))
    t = res.metrics["temperature"]
    assert t == pytest.approx(fit_temperature(ctx.val_predictions.logits, ctx.val_predictions.labels))
    assert res.metrics["nll_after_temperature"] == pytest.approx(negative_log_likelihood(logits / t, labels))
    for key in (
        "ece",
        "aece",
        "mce",
        "classwise_ece",
        "nll",
        "brier",
        "ece_after_temperature",
        "mean_confidence_wrong",
        "mean_confidence_correct",
    ):
        assert math.isfinite(res.metrics[key]), key
    assert set(res.figures) == {"reliability", "reliability_temperature", "risk_coverage"}
    assert all(stem in res.captions for stem in res.figures)
    assert res.tables[0].rows[0][0].startswith("ECE")
    worse = res.metrics["ece_after_temperature"] > res.metrics["ece"]
    assert worse == any("makes test ECE worse" in w for w in res.warnings)


def test_probe_without_validation_split_skips_temperature_with_a_warning() -> None:
    ctx = _ctx(n_val=0)
    res = CalibrationProbe().run(ctx)
    assert res.metrics["temperature"] == 1.0
    assert res.metrics["ece_after_temperature"] == res.metrics["ece"]
    assert any("temperature scaling was skipped" in w for w in res.warnings)
    assert "reliability_temperature" not in res.figures


def test_probe_on_an_empty_test_set() -> None:
    ctx = _ctx()
    empty = Predictions(
        torch.empty(0, 3),
        torch.empty(0, dtype=torch.long),
        torch.empty(0, 0),
        torch.empty(0, dtype=torch.long),
    )
    ctx.predictions = empty
    res = CalibrationProbe().run(ctx)
    assert res.metrics["ece"] == 0.0 and all(math.isfinite(v) for v in res.metrics.values())
    assert any("empty" in w for w in res.warnings)
