"""Selective prediction (risk-coverage, AURC) against hand computations, and in the calibration probe."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from stresslab.metrics.selective import (
    accuracy_at_coverage,
    aurc,
    excess_aurc,
    oracle_aurc,
    risk_coverage,
)
from stresslab.probes import build_probe
from tests.probes.test_calibration import _ctx


def test_aurc_by_hand() -> None:
    conf = torch.tensor([0.6, 0.9, 0.7, 0.8])
    correct = torch.tensor([False, True, True, False])
    # Most confident first: 0.9 right, 0.8 wrong, 0.7 right, 0.6 wrong.
    # Risk at k = 1..4: 0, 1/2, 1/3, 2/4.
    coverage, risk = risk_coverage(conf, correct)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk == pytest.approx([0.0, 0.5, 1 / 3, 0.5])
    assert aurc(conf, correct) == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    # Ideal: right, right, wrong, wrong -> 0, 0, 1/3, 2/4.
    assert oracle_aurc(correct) == pytest.approx((1 / 3 + 0.5) / 4)
    assert excess_aurc(conf, correct) == pytest.approx(0.125)
    assert accuracy_at_coverage(conf, correct, 0.5) == pytest.approx(0.5)
    assert accuracy_at_coverage(conf, correct, 0.75) == pytest.approx(2 / 3)
    assert accuracy_at_coverage(conf, correct, 0.25) == pytest.approx(1.0)
    assert accuracy_at_coverage(conf, correct, 0.3) == pytest.approx(0.5)  # ceil(0.3 x 4) = 2 images
    assert accuracy_at_coverage(conf, correct, 1.0) == pytest.approx(0.5)


def test_ties_give_the_mean_over_tie_orders() -> None:
    conf = torch.tensor([0.9, 0.5, 0.5, 0.5, 0.2])
    correct = torch.tensor([True, False, True, True, False])
    # Brute force: every order of the three tied images, equally likely.
    tied = [1, 2, 3]
    values = []
    for perm in itertools.permutations(tied):
        order = [0, *perm, 4]
        err = 1.0 - correct[order].double().numpy()
        values.append(np.mean(np.cumsum(err) / np.arange(1, 6)))
    assert aurc(conf, correct) == pytest.approx(float(np.mean(values)))
    # Equal confidences everywhere: the risk is the error rate at every coverage.
    _, risk = risk_coverage(torch.ones(4), torch.tensor([True, False, True, True]))
    assert risk == pytest.approx([0.25] * 4)


def test_edges() -> None:
    assert math.isnan(aurc(torch.zeros(0), torch.zeros(0, dtype=torch.bool)))
    assert aurc(torch.rand(6), torch.ones(6, dtype=torch.bool)) == 0.0
    assert excess_aurc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="coverage"):
        accuracy_at_coverage(torch.rand(3), torch.ones(3), 0.0)
    # 0.9 x 10 is 9.000000000000002 in floats: still the 9 most confident.
    conf = torch.arange(10, 0, -1).float()
    correct = torch.tensor([True] * 9 + [False])
    assert accuracy_at_coverage(conf, correct, 0.9) == 1.0


def test_calibration_probe_reports_selective_prediction() -> None:
    ctx = _ctx()
    res = build_probe("calibration", {}).run(ctx)
    p = ctx.predictions
    correct = p.preds == p.labels
    assert res.metrics["aurc"] == pytest.approx(aurc(p.confidence, correct))
    t = res.metrics["temperature"]
    scaled_conf = (p.logits / t).softmax(1).max(1).values
    assert res.metrics["aurc_after_temperature"] == pytest.approx(aurc(scaled_conf, correct))
    for c in (0.9, 0.8, 0.5):
        assert res.metrics[f"accuracy_at_coverage_{c}"] == pytest.approx(
            accuracy_at_coverage(p.confidence, correct, c)
        )
        assert f"accuracy_at_coverage_{c}_after_temperature" in res.metrics
    assert "risk_coverage" in res.figures
    assert any(t.title.startswith("Selective prediction") for t in res.tables)
    assert any(line.startswith("Selective prediction") for line in res.summary)
    assert set(res.data["risk_coverage"]) >= {"test", "ideal ranking"}
