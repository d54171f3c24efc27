"""The calibration probe's selective-prediction view: what abstaining on the least
confident predictions buys, before and after temperature scaling.

Temperature scaling keeps each prediction's class but can reorder confidences across
images (the max softmax of z / T moves differently for different logits), so the
risk-coverage curve and AURC can change too; usually a little.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from stresslab.metrics.selective import accuracy_at_coverage, aurc, excess_aurc, oracle_aurc, risk_coverage
from stresslab.probes.base import ProbeResult, Table

#: Coverages at which accuracy is reported (the share of test images answered).
COVERAGES = (0.9, 0.8, 0.5)
#: Points kept per curve in the JSON record.
CURVE_POINTS = 200


def risk_coverage_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Risk (error rate of the answered images) against coverage, one line per curve."""
    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.subplots()
    for label, (coverage, risk) in curves.items():
        ax.plot(coverage, risk, "--" if label.startswith("ideal") else "-", label=label, linewidth=1.2)
    for c in COVERAGES:
        ax.axvline(c, color="gray", linewidth=0.5, alpha=0.5)
    ax.set_xlabel("coverage (share of test images answered, most confident first)")
    ax.set_ylabel("risk (error rate on the answered)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Risk-coverage curve", fontsize=9)
    fig.tight_layout()
    return fig


def _thin(values: np.ndarray) -> list[float]:
    idx = np.unique(np.linspace(0, len(values) - 1, min(CURVE_POINTS, len(values))).round().astype(int))
    return [round(float(v), 5) for v in values[idx]]


def selective_section(
    res: ProbeResult, logits: Tensor, scaled: Tensor, labels: Tensor, temperature: float, fitted: bool
) -> None:
    """Add AURC, E-AURC and accuracy at each of :data:`COVERAGES`, before (``aurc``, ...) and
    after temperature scaling (``aurc_after_temperature``, ...), with a table, the
    ``risk_coverage`` figure, a summary line and the curves in ``res.data``. Confidence is
    the max softmax probability. Nothing for an empty test set."""
    if len(labels) == 0:
        return
    correct = logits.argmax(1) == labels
    sides = {"": logits.softmax(1).max(1).values, "_after_temperature": scaled.softmax(1).max(1).values}
    values: dict[str, dict[str, float]] = {}
    for suffix, conf in sides.items():
        v = {"aurc": aurc(conf, correct), "eaurc": excess_aurc(conf, correct)}
        for c in COVERAGES:
            v[f"accuracy_at_coverage_{c}"] = accuracy_at_coverage(conf, correct, c)
        values[suffix] = v
        res.metrics.update({f"{k}{suffix}": x for k, x in v.items() if math.isfinite(x)})
    before, after = values[""], values["_after_temperature"]
    full = float(correct.double().mean())
    t_label = f"T = {temperature:.3f}"
    rows = [["accuracy at 100% coverage", round(full, 4), round(full, 4)]]
    rows += [
        [f"accuracy at {c:.0%} coverage", round(before[k], 4), round(after[k], 4)]
        for c in COVERAGES
        for k in [f"accuracy_at_coverage_{c}"]
    ]
    rows.append(["AURC (lower is better)", round(before["aurc"], 5), round(after["aurc"], 5)])
    rows.append(
        ["E-AURC (AURC minus the ideal ranking's)", round(before["eaurc"], 5), round(after["eaurc"], 5)]
    )
    res.tables.append(
        Table(
            "Selective prediction: abstain on the least confident",
            ["", "test", f"test, {t_label}"],
            rows,
            caption="Accuracy on the given share of test images with the highest confidence (max softmax "
            "probability), the rest abstained on. AURC: area under the risk-coverage curve (Geifman & "
            "El-Yaniv 2017; Geifman et al. 2018); E-AURC: the same minus the area of an ideal ranking "
            f"({oracle_aurc(correct):.5f} at this error rate), which only a better ranking can lower.",
        )
    )
    curves = {"test": risk_coverage(sides[""], correct)}
    if fitted:
        curves[f"test, {t_label}"] = risk_coverage(sides["_after_temperature"], correct)
    curves["ideal ranking"] = risk_coverage(correct.double(), correct)  # every right one first
    res.figures["risk_coverage"] = risk_coverage_figure(curves)
    res.captions["risk_coverage"] = (
        "Error rate on the answered test images as the least confident are abstained on (coverage "
        "falls from right to left); dashed: an ideal ranking. Gray lines: "
        + ", ".join(f"{c:.0%}" for c in COVERAGES)
        + " coverage."
    )
    res.data["risk_coverage"] = {
        label: {"coverage": _thin(c), "risk": _thin(r)} for label, (c, r) in curves.items()
    }
    at = f"accuracy_at_coverage_{COVERAGES[-1]}"
    line = (
        f"Selective prediction: accuracy {full:.2%} on every test image, "
        f"{before['accuracy_at_coverage_0.9']:.2%} on the 90% most confident and {before[at]:.2%} on the "
        f"most confident half; AURC {before['aurc']:.4f}, E-AURC {before['eaurc']:.4f}"
    )
    if fitted:
        line += f"; after temperature scaling AURC {after['aurc']:.4f}, E-AURC {after['eaurc']:.4f}"
    res.summary.append(line + ".")
