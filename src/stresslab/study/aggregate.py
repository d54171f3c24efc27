"""Read a study directory back: every run's state, metrics, predictions and history.

Everything here comes from the study directory alone (the runs' own files), so a report
can be rebuilt at any time, also while runs are missing or failed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stresslab.diagnosis import read_causes
from stresslab.files import read_json
from stresslab.metrics.calibration import expected_calibration_error
from stresslab.runs.directory import RunDir
from stresslab.runs.saved_predictions import SavedPredictions, load_predictions
from stresslab.study.plan import DONE, StudyDir
from stresslab.study.spec import StudySpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    """A study metric: its label, the run metric it reads, and how to show it."""

    key: str
    label: str
    source: str  # "probe.metric" in metrics.json ("" when computed here)
    percent: bool = True
    higher_is_better: bool = True
    spread: bool = True  # varies between seeds (parameters do not)
    bounds: tuple[float, float] | None = (0.0, 1.0)  # the range a value can take


METRICS = (
    Metric("accuracy", "accuracy", "evaluation.accuracy"),
    Metric("macro_f1", "macro F1", "evaluation.macro_f1", percent=False),
    Metric("ece", "ECE", "calibration.ece", percent=False, higher_is_better=False),
    Metric("robust_accuracy", "robust accuracy", "adversarial.robust_accuracy"),
    Metric("corruption_accuracy", "mean corruption accuracy", "corruption.mean_corruption_accuracy"),
    Metric(
        "train_seconds", "train time (s)", "", percent=False, higher_is_better=False, bounds=(0.0, math.inf)
    ),
    Metric("params", "parameters", "", percent=False, higher_is_better=False, spread=False, bounds=None),
)


@dataclass
class RunData:
    """One arm x seed as found on disk (``preds`` and the rest are empty unless done)."""

    arm: str
    seed: int
    state: str
    path: Path
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    preds: SavedPredictions | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    overfitting_onset: int | None = None
    overfitting: int | None = None
    failed_probes: list[str] = field(default_factory=list)
    causes: dict[int, str] = field(default_factory=dict)  # test index -> cause (diagnosis.csv)

    @property
    def usable(self) -> bool:
        """Finished with predictions on disk (probe failures do not stop the comparison)."""
        return self.preds is not None


def _flatten_nan(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: float("nan") if v is None else v for k, v in r.items()} for r in history]


def read_run(sdir: StudyDir, arm: str, seed: int) -> RunData:
    """The state and results of one run (see :class:`RunData`)."""
    path = sdir.run_dir(arm, seed)
    run = RunDir(path)
    rd = RunData(arm, seed, sdir.state(arm, seed), path)
    if rd.state == "failed":
        rd.error = str(sdir.error(arm, seed).get("error", ""))
    if run.predictions.is_file() and run.metrics.is_file():
        rd.preds = load_predictions(run.predictions)
        rd.metrics = {k: float(v) for k, v in read_json(run.metrics).items()}
        if run.history.is_file():
            rd.history = _flatten_nan(list(read_json(run.history)))
        evaluation = run.result_json("evaluation")
        if evaluation.is_file():
            rec = read_json(evaluation)
            rd.overfitting_onset = rec.get("data", {}).get("overfitting_onset_epoch")
            flag = rec.get("metrics", {}).get("overfitting")
            rd.overfitting = None if flag is None else int(flag)
        rd.failed_probes = run.failed_probes()
        if run.diagnosis.is_file():
            rd.causes = read_causes(run.diagnosis)
        if rd.state != DONE and not rd.failed_probes and rd.state != "failed":
            rd.state = "partial"
    return rd


def collect(sdir: StudyDir, spec: StudySpec) -> dict[str, dict[int, RunData]]:
    """``{arm: {seed: RunData}}`` in the study's order."""
    return {arm: {s: read_run(sdir, arm, s) for s in spec.seeds} for arm in spec.arms}


def run_value(rd: RunData, metric: Metric, params: dict[str, float] | None = None) -> float | None:
    """One run's value of ``metric``: from its metrics.json, else computed from predictions."""
    if metric.key == "train_seconds":
        secs = [float(r.get("seconds", float("nan"))) for r in rd.history]
        return float(sum(secs)) if secs and all(math.isfinite(s) for s in secs) else None
    if metric.key == "params":
        return None if params is None else params.get(rd.arm)
    if metric.source in rd.metrics:
        return rd.metrics[metric.source]
    p = rd.preds
    if p is None or len(p.labels) == 0:
        return None
    if metric.key == "accuracy":
        return float(p.correct.mean())
    if metric.key == "ece":
        return expected_calibration_error(torch.from_numpy(p.probs), torch.from_numpy(p.labels))
    if metric.key == "macro_f1":
        from sklearn.metrics import f1_score

        present = np.unique(p.labels)
        return float(f1_score(p.labels, p.preds, labels=present, average="macro", zero_division=0))
    return None


def class_accuracy(preds: SavedPredictions, common: np.ndarray) -> np.ndarray:
    """Accuracy per class (K,) over the test images in ``common`` (NaN for absent classes)."""
    from stresslab.study.compare import take

    labels = take(preds.index, preds.labels, common)
    correct = take(preds.index, preds.correct, common)
    k = preds.probs.shape[1]
    out = np.full(k, np.nan)
    for c in range(k):
        mask = labels == c
        if mask.any():
            out[c] = float(correct[mask].mean())
    return out
