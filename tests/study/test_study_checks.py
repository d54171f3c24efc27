"""A study's ``checks:``: validated with the study file, then evaluated per arm and seed
against the baseline arm's run of the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stresslab.errors import ConfigError
from stresslab.report.render import environment
from stresslab.runs.saved_predictions import load_predictions
from stresslab.study.aggregate import RunData
from stresslab.study.checks import study_checks
from stresslab.study.spec import parse_study
from tests.run_factories import lookup_run, probabilities

LABELS = np.arange(12) % 3


def _spec(checks: object) -> dict[str, object]:
    return {
        "name": "gated",
        "base": {"data": {"dataset": "npz", "root": "x.npz"}, "probes": ["evaluation"]},
        "seeds": [0],
        "arms": {"baseline": {}, "smooth": {"train.label_smoothing": 0.1}},
        "checks": checks,
    }


def test_study_checks_are_validated_with_the_study_file() -> None:
    spec = parse_study(_spec({"evaluation.accuracy": ">= 0.5", "baseline": {"max_class_drop": 10}}))
    assert parse_study(spec.to_dict()).checks == spec.checks  # kept for --resume
    with pytest.raises(ConfigError, match="the baseline is the compare_to arm"):
        parse_study(_spec({"baseline": "runs/old"}))
    with pytest.raises(ConfigError, match="no probe 'calibration'"):
        parse_study(_spec({"calibration.ece": "<= 0.1"}))
    with pytest.raises(ConfigError, match="not 'OP NUMBER'"):
        parse_study(_spec({"evaluation.accuracy": "high"}))


def test_each_arm_is_checked_against_the_baseline_arm(tmp_path: Path) -> None:
    right = np.arange(12) < 9
    worse = np.arange(12) < 6  # breaks rows 6-8 with confidence 0.95
    runs = {}
    for arm, ok in (("baseline", right), ("smooth", worse)):
        preds = np.where(ok, LABELS, (LABELS + 1) % 3)
        path = lookup_run(tmp_path / arm, probabilities(preds, np.full(12, 0.95)), LABELS, ["evaluation"])
        runs[arm] = {0: RunData(arm, 0, "done", path, preds=load_predictions(path / "predictions.npz"))}
    spec = parse_study(_spec({"evaluation.accuracy": ">= 0.7", "baseline": {"max_negative_flip_rate": 0.2}}))
    out = study_checks(spec, runs)
    base, smooth = out["arms"]["baseline"]["seeds"]["0"], out["arms"]["smooth"]["seeds"]["0"]
    assert base["passed"] and base["baseline"] is None and base["n_checks"] == 1
    assert not smooth["passed"] and not out["passed"]
    assert (smooth["baseline"]["fixed"], smooth["baseline"]["broken"]) == (0, 3)
    assert smooth["baseline"]["confident_broken"] == 3
    assert (smooth["baseline"]["baseline_ece"], smooth["baseline"]["ece"]) == pytest.approx(
        (0.2, 0.45), abs=1e-6
    )
    failed = {r["name"] for r in smooth["checks"] if not r["passed"]}
    assert failed == {
        "evaluation.accuracy",
        "baseline.negative_flip_rate",
        "baseline.confident_broken",
        "baseline.class_drop",
        "baseline.ece_increase",  # confidence .95 throughout: ECE .95 - .75 = .2, then .95 - .5 = .45
    }
    html = environment().from_string('{% import "_gates.html.j2" as g %}{{ g.study_checks(c, "baseline") }}')
    page = html.render(c=out)
    assert "some arms FAILED" in page and "FAIL (1/6)" in page and "negative flip rate 0.2500" in page
