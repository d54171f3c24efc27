"""The corruption probe's tables: accuracy per corruption and severity, and per class.

An undefined value (NaN) becomes an empty cell (``None``), never a number, and the caption
says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from stresslab.probes.base import Table
from stresslab.probes.corruption.compute import ClassShift, CorruptionScores, defined


def cell(value: float) -> float | None:
    """``value`` rounded to 4 decimals, or None when it is undefined (NaN or infinite)."""
    v = defined(value)
    return round(v, 4) if v is not None else None


def severity_table(scores: CorruptionScores) -> Table:
    """Rows: clean, then each corruption; columns: accuracy per severity, mean, drop, ECE."""
    sev = scores.severities
    acc = scores.accuracy
    clean = scores.clean_accuracy
    no_drop = 0.0 if math.isfinite(clean) else math.nan
    rows: list[list[Any]] = [
        ["clean", *[cell(clean)] * len(sev), cell(clean), cell(no_drop), cell(scores.clean_ece)]
    ]
    for i, name in enumerate(scores.corruptions):
        mean = float(acc[i].mean())
        rows.append(
            [name, *[cell(float(v)) for v in acc[i]], cell(mean), cell(clean - mean), cell(scores.ece[i])]
        )
    caption = (
        "Top-1 accuracy on the same test images under each corruption; ECE with "
        f"{scores.n_bins} equal-width bins over all severities of a corruption."
    )
    if any(row[-1] is None for row in rows):
        caption += (
            " An empty ECE cell is undefined: the model gave non-finite logits on some of those images, "
            "so their probabilities mean nothing."
        )
    return Table(
        "Accuracy per corruption and severity",
        ["corruption", *[f"s{s}" for s in sev], "mean", "drop vs clean", "ECE"],
        rows,
        caption,
    )


def class_table(shifts: Sequence[ClassShift]) -> Table:
    """Clean against corrupted accuracy per class, weakest class under corruption first."""
    return Table(
        "Accuracy per class, clean vs corrupted",
        ["class", "images", "clean", "corrupted (mean)", "drop"],
        [
            [s.name, s.n, cell(s.clean), cell(s.corrupted), cell(s.drop)]
            for s in sorted(shifts, key=lambda s: s.corrupted)
        ],
        "Corrupted accuracy is the mean over every corruption and severity run; weakest class first.",
    )
