"""The data randomization test in the report: metrics, a table beside the method-quality
table, a warning per method that fails, a summary sentence, a figure of both models' maps
and a per-case record. Undefined values are left out of the metrics and said so."""

from __future__ import annotations

import math
from typing import Any

import torch

from stresslab.probes.base import ProbeResult, Table
from stresslab.probes.explain.compute import Explained
from stresslab.probes.explain.data_randomization import DataRandomization
from stresslab.probes.explain.figures import MapColumn, case_rows_figure
from stresslab.probes.explain.present import DASH_NOTE, fmt, put

# Adebayo et al. trained the label-permuted model until it fit its labels; below this share
# the copy is closer to an untrained model, and the summary says so.
MEMORIZED = 0.9


def present_data_randomization(
    res: ProbeResult, found: DataRandomization, explained: Explained, cases_per_figure: int
) -> None:
    """Write what the data randomization test found into ``res``."""
    s = found.settings
    res.metrics["data_randomization.epochs"] = float(s.epochs)
    res.metrics["data_randomization.run_epochs"] = float(found.run_epochs)
    res.metrics["data_randomization.threshold"] = s.threshold
    put(res.metrics, "data_randomization.train_accuracy", found.fit if math.isfinite(found.fit) else None)
    n = len(explained.cases)
    rows: list[list[Any]] = []
    failed, passed = [], []
    for name, r in explained.methods.items():
        label = r.method.label
        median, mean, ok = found.median(name), found.mean(name), found.passed(name)
        undefined = int((~torch.isfinite(found.spearman[name])).sum())
        put(res.metrics, f"{name}.data_randomization_spearman", median)
        put(res.metrics, f"{name}.data_randomization_spearman_mean", mean)
        if ok is not None:
            res.metrics[f"{name}.data_randomization_pass"] = float(ok)
        if ok is None:
            res.warnings.append(
                f"{label}: all {n} maps are constant on this model or the label-randomized one, so the "
                "data randomization test is undefined: left out of the metrics and not a pass"
            )
        elif ok:
            passed.append(label)
        else:
            failed.append(label)
            res.warnings.append(
                f"{label} fails the data randomization test: its maps of a model trained on permuted "
                f"labels barely differ from its maps of this model (median rank correlation "
                f"{median:.3f} >= {s.threshold}); they show the image more than what the model learned"
            )
        if ok is not None and undefined:
            res.warnings.append(
                f"{label}: {undefined} of {n} maps are constant on this model or the label-randomized "
                "one; their rank correlation is undefined and left out of the data randomization test"
            )
        verdict = "undefined" if ok is None else "pass" if ok else "fail: maps barely change"
        rows.append([label, fmt(median), fmt(mean), n - undefined, verdict])
    fit = "undefined" if not math.isfinite(found.fit) else f"{found.fit:.0%}"
    trained = (
        f"a copy of the model with fresh weights, trained {s.epochs} epochs (the run trained "
        f"{found.run_epochs}) by the run's recipe on the same {found.n_train} training images with "
        f"permuted labels, fitting {fit} of them"
    )
    res.tables.append(
        Table(
            title="Data randomization test",
            columns=["method", "median rank corr.", "mean rank corr.", "cases", "verdict"],
            rows=rows,
            caption=(
                f"Adebayo et al. (2018): Spearman rank correlation, per case, between each method's map "
                f"of this model and of {trained}. A median >= {s.threshold} fails: the map does not "
                "depend on what the model learned from its labels."
                + (" " + DASH_NOTE if any(c is None for row in rows for c in row) else "")
            ),
        )
    )
    res.summary.append(
        f"Data randomization test (Adebayo et al., 2018), against {trained}: "
        + (f"{', '.join(failed)} fail (their maps barely change)" if failed else "no method fails")
        + (f"; {', '.join(passed)} pass" if passed else "")
        + "."
        + (
            f" The copy fits under {MEMORIZED:.0%} of its permuted labels (Adebayo et al. trained it "
            "until it fit them), so it is closer to an untrained model than theirs."
            if not found.fit >= MEMORIZED
            else ""
        )
    )
    _figure(res, found, explained, cases_per_figure)
    res.data["data_randomization"] = {
        "epochs": s.epochs,
        "run_epochs": found.run_epochs,
        "threshold": s.threshold,
        "train_accuracy": found.fit if math.isfinite(found.fit) else None,
        "n_train": found.n_train,
        "methods": {
            name: {"median": found.median(name), "mean": found.mean(name), "passed": found.passed(name)}
            for name in explained.methods
        },
        "cases": [
            {"index": c.index}
            | {
                name: (round(float(rho[i]), 4) if math.isfinite(float(rho[i])) else None)
                for name, rho in found.spearman.items()
            }
            for i, c in enumerate(explained.cases)
        ],
    }


def _figure(res: ProbeResult, found: DataRandomization, explained: Explained, cases_per_figure: int) -> None:
    columns = []
    for name, r in explained.methods.items():
        diverging = r.method.signed or r.true_confidence is not None
        columns.append(MapColumn(f"{r.method.label}\nthis model", r.maps, diverging))
        columns.append(MapColumn(f"{r.method.label}\npermuted labels", found.maps[name], diverging))
    rows = list(range(min(cases_per_figure, len(explained.cases))))
    res.figures["data_randomization"] = case_rows_figure(
        explained.images, explained.cases, columns, explained.class_names, rows
    )
    res.captions["data_randomization"] = (
        f"Data randomization test on the first {len(rows)} cases: each method's map of this model "
        "beside its map of the copy trained on permuted labels. Maps that look alike explain the "
        "image, not the model."
    )
