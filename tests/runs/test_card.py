"""The model card: its sections, its numbers equal to metrics.json's, the bootstrap intervals
against scipy, and ``stresslab card``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats
from sklearn.metrics import f1_score

from stresslab.metrics.bootstrap import (
    bootstrap_interval,
    ece_columns,
    ece_from_sums,
    f1_columns,
    macro_f1_from_sums,
)
from stresslab.metrics.calibration import expected_calibration_error
from stresslab.runs.card import card_markdown, model_card
from stresslab.runs.checks import parse_checks, run_checks
from tests.cli_helpers import invoke
from tests.run_factories import lookup_run, probabilities

SECTIONS = [
    "Model details",
    "Intended use",
    "Metrics",
    "Calibration",
    "Robustness",
    "Known failure modes",
    "Label quality",
    "Out-of-distribution inputs",
    "Release checks",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    preds = np.where(rng.random(60) < 0.7, labels, (labels + 1 + (rng.random(60) < 0.5)) % 3)
    path = lookup_run(
        tmp_path_factory.mktemp("card") / "run", probabilities(preds, rng.uniform(0.4, 0.99, 60)), labels
    )
    cfg = yaml.safe_load((path / "config.resolved.yaml").read_text())
    cfg["card"] = {"intended_use": "sorting insect photos", "license": "MIT"}
    (path / "config.resolved.yaml").write_text(yaml.safe_dump(cfg))
    return path


def test_bootstrap_interval_agrees_with_scipy() -> None:
    x = (np.random.default_rng(3).random(400) < 0.8).astype(float)
    ours = bootstrap_interval(x, resamples=4000, seed=1)
    ref = stats.bootstrap(
        (x,), np.mean, n_resamples=4000, method="percentile", random_state=2
    ).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), abs=0.01)
    assert ours[0] < x.mean() < ours[1]
    assert bootstrap_interval(np.ones(10)) == (1.0, 1.0)
    assert bootstrap_interval(x, seed=5) == bootstrap_interval(x, seed=5)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(x, level=1.0)


def test_card_statistics_equal_their_references() -> None:
    rng = np.random.default_rng(4)
    y, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    y[y == 3] = 0  # class 3 is predicted but absent from the labels: left out of the mean
    sums = f1_columns(y, p, 4).sum(axis=0)[None]
    assert macro_f1_from_sums(sums)[0] == pytest.approx(f1_score(y, p, labels=[0, 1, 2], average="macro"))
    probs = rng.dirichlet(np.ones(4), 300)
    probs[:3] = [1.0, 0, 0, 0]  # a confidence of exactly 1 falls in the last bin
    correct = (probs.argmax(1) == y).astype(float)
    ref = expected_calibration_error(torch.tensor(probs), torch.tensor(y))
    assert ece_from_sums(ece_columns(probs.max(1), correct).sum(axis=0)[None], 300)[0] == pytest.approx(ref)


def test_the_card_has_every_section_and_metrics_json_numbers(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    title, sections = model_card(run)
    assert [s.title for s in sections] == SECTIONS
    md = card_markdown(title, sections)
    for name in SECTIONS:
        assert f"## {name}\n" in md
    acc = metrics["evaluation.accuracy"]
    assert f"| accuracy | `evaluation.accuracy` | {acc:.2%} |" in md
    assert f"| ECE (15 bins) | `calibration.ece` | {metrics['calibration.ece']:.4g} |" in md
    per_class = json.loads((run / "results" / "evaluation.json").read_text())["data"]["per_class"]
    assert f"| bee | 20 | {per_class['bee']['accuracy']:.2%} |" in md
    lo, hi = next(r for s in sections for t in s.tables for r in t.rows if r[0] == "accuracy")[3].split(
        " to "
    )
    assert float(lo.rstrip("%")) / 100 < acc < float(hi.rstrip("%")) / 100
    assert "Intended use: sorting insect photos" in md and "License: MIT" in md
    assert "Out-of-scope use: not stated" in md
    # The run's diagnosis gives the known failure modes (its first summary lines).
    diagnosis = json.loads((run / "results" / "diagnosis.json").read_text())
    assert diagnosis["summary"][0] in md
    assert "No checks ran" in md


def test_card_cli_and_report_show_the_checks(run: Path, tmp_path: Path) -> None:
    run_checks(run, parse_checks({"evaluation.accuracy": ">= 0.99"}))
    res = invoke(["card", str(run), "--out", str(tmp_path / "card.md")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "card.md").read_text()
    assert "FAILED: 0 of 1 checks passed." in md
    assert invoke(["report", str(run)]).exit_code == 0
    html = (run / "report.html").read_text()
    assert 'id="model-card"' in html and "sorting insect photos" in html
    assert html.index('id="checks"') < html.index('id="summary"')
    assert invoke(["card", str(tmp_path)]).exit_code == 2
