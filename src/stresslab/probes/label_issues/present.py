"""Records, tables and figures of the label_issues probe (data in, report parts out)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from stresslab.data.base import to_float
from stresslab.data.indexed import Images
from stresslab.probes.base import Table
from stresslab.probes.label_issues.confident import LabelIssues
from stresslab.report.figures import image_gallery, matrix_figure


def issue_records(
    issues: LabelIssues, probs: np.ndarray, labels: np.ndarray, index: Tensor, errors: set[int] | None
) -> list[dict[str, Any]]:
    """One dict per flagged example, most likely wrong first: ``position`` (row in the set),
    ``index`` (the image's index in the official split), ``given`` and ``suggested`` class,
    ``score`` (label quality), ``p_given`` / ``p_suggested`` probabilities and, for the test
    set (``errors`` given), ``model_error`` (the model's prediction differs from the label)."""
    out = []
    for rank, pos in enumerate(issues.ranked.tolist(), start=1):
        given, sugg = int(labels[pos]), int(issues.suggested[pos])
        rec: dict[str, Any] = {
            "rank": rank,
            "position": pos,
            "index": int(index[pos]),
            "given": given,
            "suggested": sugg,
            "score": round(float(issues.scores[pos]), 6),
            "p_given": round(float(probs[pos, given]), 6),
            "p_suggested": round(float(probs[pos, sugg]), 6),
        }
        if errors is not None:
            rec["model_error"] = pos in errors
        out.append(rec)
    return out


def issue_table(
    title: str, records: list[dict[str, Any]], names: Sequence[str], what: str, limit: int
) -> Table:
    """The top ``limit`` records as a table; ``what`` names the index column's split."""
    test = bool(records) and "model_error" in records[0]
    cols = [
        "rank",
        f"{what} index",
        "given label",
        "suggested label",
        "label quality",
        "p(given)",
        "p(suggested)",
    ]
    if test:
        cols.append("model wrong")
    rows = []
    for r in records[:limit]:
        row: list[Any] = [
            r["rank"],
            r["index"],
            names[r["given"]],
            names[r["suggested"]],
            r["score"],
            r["p_given"],
            r["p_suggested"],
        ]
        if test:
            row.append("yes" if r["model_error"] else "no")
        rows.append(row)
    caption = f"{len(records)} in all (the full list is in results/label_issues.json)."
    return Table(title, cols, rows, caption=caption)


def pair_rows(issues: LabelIssues, names: Sequence[str], n_pairs: int) -> list[dict[str, Any]]:
    """The ``n_pairs`` largest off-diagonal cells of the confident joint: given label, likely
    true label, estimated count and share of the given label's examples (rate in [0, 1])."""
    cj, rates = issues.confident_joint, issues.noise_rates
    k = cj.shape[0]
    cells = [(int(cj[i, j]), i, j) for i in range(k) for j in range(k) if i != j and cj[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [
        {
            "given": i,
            "true": j,
            "given_name": names[i],
            "true_name": names[j],
            "count": c,
            "rate": round(float(rates[i, j]), 6),
        }
        for c, i, j in cells[:n_pairs]
    ]


def pair_table(title: str, pairs: list[dict[str, Any]]) -> Table:
    rows = [[p["given_name"], p["true_name"], p["count"], p["rate"]] for p in pairs]
    return Table(
        title,
        ["given label", "likely true label", "estimated count", "share of the given label"],
        rows,
        caption="Off-diagonal cells of the calibrated confident joint (cleanlab.count), largest first.",
    )


def noise_figure(issues: LabelIssues, names: Sequence[str], title: str) -> Figure:
    """Row-normalized confident joint in percent (rows: given label, columns: likely true)."""
    rates = np.nan_to_num(issues.noise_rates, nan=0.0) * 100.0
    return matrix_figure(
        np.round(rates, 1), list(names), title, xlabel="likely true label", ylabel="given label", fmt=".1f"
    )


def gallery(x: Images, records: list[dict[str, Any]], names: Sequence[str], title: str, size: int) -> Figure:
    """The top ``size`` candidates from images ``x`` (rows = positions), titled with index,
    given -> suggested label and label quality."""
    top = records[:size]
    imgs = (
        to_float(x[torch.tensor([r["position"] for r in top], dtype=torch.long)]) if top else torch.empty(0)
    )
    titles = [
        f"#{r['index']} {names[r['given']][:10]}\n→ {names[r['suggested']][:10]} {r['score']:.2f}"
        for r in top
    ]
    return image_gallery(imgs, titles, ncols=8, suptitle=title)


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
