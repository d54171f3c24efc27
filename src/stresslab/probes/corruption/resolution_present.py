"""The resolution check in the corruption probe's report: metrics (``resolution.x<f>...``),
tables per class and per confused pair, a figure and findings in words.

An undefined value (an accuracy over no images) is left out of the metrics and is an empty
table cell.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stresslab.probes.base import Table
from stresslab.probes.corruption.resolution import ResolutionScores
from stresslab.probes.corruption.tables import cell

#: Level of the McNemar test that the clean confusions deepen.
ALPHA = 0.05


def metrics(s: ResolutionScores) -> dict[str, float]:
    """``resolution.x<f>.accuracy`` / ``.drop`` / ``.class.<i>.accuracy``, the clean pairs'
    mean share (``resolution.clean.top_pairs_share``, ``resolution.x<f>.top_pairs_share``) and
    the share of new errors that land in those pairs (``resolution.x<f>.new_errors_in_top_pairs``)
    and the one-sided McNemar p-value that they deepen (``resolution.x<f>.top_pairs_deepening_p``)."""
    out: dict[str, float] = {"resolution.clean.accuracy": s.clean_accuracy}
    if s.pairs:
        out["resolution.clean.top_pairs_share"] = float(np.mean([p.clean for p in s.pairs]))
    classes, _, per = s.class_accuracy()
    for j, f in enumerate(s.factors):
        key = f"resolution.x{f}"
        out[f"{key}.accuracy"] = float(s.accuracy[j])
        out[f"{key}.drop"] = s.clean_accuracy - float(s.accuracy[j])
        for i, c in enumerate(classes):
            out[f"{key}.class.{c}.accuracy"] = float(per[i, j])
        if s.pairs:
            out[f"{key}.top_pairs_share"] = float(np.mean([p.shares[j] for p in s.pairs]))
        if s.new_errors[j]:
            out[f"{key}.new_errors_in_top_pairs"] = s.new_in_pairs[j] / s.new_errors[j]
        p = s.deepening_p(j)
        if p is not None:
            out[f"{key}.top_pairs_deepening_p"] = p
    return {k: float(v) for k, v in out.items() if math.isfinite(v)}


def tables(s: ResolutionScores) -> list[Table]:
    """Accuracy per class at each factor (largest drop first) and the clean top pairs' shares."""
    classes, clean, per = s.class_accuracy()
    heads = [f"x{f}" for f in s.factors]
    last = per[:, -1] if per.size else np.zeros(0)
    order = np.argsort(-(clean - last), kind="stable")
    rows: list[list[Any]] = [
        ["all", len(s.labels), cell(s.clean_accuracy), *[cell(float(a)) for a in s.accuracy]]
    ]
    rows[0].append(cell(s.clean_accuracy - float(s.accuracy[-1])))
    for i in order:
        rows.append(
            [
                s.class_names[classes[i]],
                int((s.labels == classes[i]).sum()),
                cell(float(clean[i])),
                *[cell(float(v)) for v in per[i]],
                cell(float(clean[i] - last[i])),
            ]
        )
    by_class = Table(
        "Accuracy at lower resolution, per class (largest drop first)",
        ["class", "images", "clean", *heads, f"drop at x{s.factors[-1]}"],
        rows,
        "The corruption probe's test images downsampled f times (area averaging) and upsampled back "
        "(bilinear) to their size.",
    )
    pair_rows = [
        [s.class_names[p.true], s.class_names[p.pred], cell(p.clean), *[cell(v) for v in p.shares]]
        for p in s.pairs
    ]
    news = [
        f"x{f}: {n_in} of {n}"
        for f, n, n_in in zip(s.factors, s.new_errors, s.new_in_pairs, strict=True)
        if n
    ]
    by_pair = Table(
        "Most confused pairs (clean) at lower resolution",
        ["true", "predicted", "clean", *heads],
        pair_rows,
        "Share of the true class's images predicted as the other class. Errors added by lower resolution "
        "(right when clean, wrong after) that fall in these pairs: "
        + ("; ".join(news) or "none added")
        + ".",
    )
    return [by_class, by_pair]


def figure(s: ResolutionScores) -> Figure:
    """Left: accuracy against the factor, overall and for the three classes hurt most. Right:
    each clean top pair's share against the factor."""
    fig = Figure(figsize=(9.0, 3.6))
    left, right = fig.subplots(1, 2)
    x = [1, *s.factors]
    left.plot(x, [s.clean_accuracy, *s.accuracy.tolist()], "o-", color="black", label="all classes")
    classes, clean, per = s.class_accuracy()
    for i in np.argsort(-(clean - per[:, -1]), kind="stable")[:3] if per.size else []:
        left.plot(x, [clean[i], *per[i].tolist()], "o--", markersize=3, label=s.class_names[classes[i]])
    left.set_ylabel("accuracy")
    left.set_ylim(-0.02, 1.02)
    left.set_title("Accuracy (overall and most hurt classes)", fontsize=9)
    for p in s.pairs:
        name = f"{s.class_names[p.true]} -> {s.class_names[p.pred]}"
        right.plot(x, [p.clean, *p.shares], "o-", markersize=3, label=name)
    right.set_ylabel("share of true class predicted as the other")
    right.set_title("Most confused pairs (clean)", fontsize=9)
    for ax in (left, right):
        ax.set_xticks(x, ["clean", *[f"x{f}" for f in s.factors]])
        ax.set_xlabel("downsampling factor")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def summary(s: ResolutionScores) -> list[str]:
    """Findings: the accuracy at each factor, the class hurt most, and whether the clean
    confusions deepen at the largest factor: more images of their true classes move into
    them than out of them (one-sided exact McNemar test at :data:`ALPHA`)."""
    accs = ", ".join(f"{a:.1%} at x{f}" for f, a in zip(s.factors, s.accuracy, strict=True))
    out = [f"Lower resolution: accuracy {s.clean_accuracy:.1%} clean, {accs} ({len(s.labels)} test images)."]
    classes, clean, per = s.class_accuracy()
    if per.size:
        worst = int(np.argmax(clean - per[:, -1]))
        out.append(
            f"Hurt most by x{s.factors[-1]}: {s.class_names[classes[worst]]} "
            f"({clean[worst]:.1%} -> {per[worst, -1]:.1%})."
        )
    if s.pairs:
        before = float(np.mean([p.clean for p in s.pairs]))
        after = float(np.mean([p.shares[-1] for p in s.pairs]))
        n, n_in, p = s.new_errors[-1], s.new_in_pairs[-1], s.deepening_p(len(s.factors) - 1)
        if p is None:
            verdict = "leaves these confusions as they are (no image moves into or out of them)"
        elif p < ALPHA:
            verdict = f"deepens these confusions (one-sided exact McNemar p = {p:.3g})"
        else:
            verdict = f"does not significantly deepen these confusions (one-sided exact McNemar p = {p:.3g})"
        line = (
            f"The {len(s.pairs)} most confused clean pairs take {before:.1%} of their true class clean and "
            f"{after:.1%} at x{s.factors[-1]}: low resolution {verdict}"
        )
        if n:
            line += f"; {n_in} of the {n} errors it adds ({n_in / n:.0%}) fall in them"
        out.append(line + ".")
    return out
