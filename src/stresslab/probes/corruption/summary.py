"""The corruption probe's numbers in words: flat metrics, summary sentences and warnings.

Undefined values (NaN) are left out of the metrics, and a warning says which and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stresslab.probes.corruption.compute import ClassShift, CorruptionScores

#: Accuracy rising by more than this (a fraction) from a lower to a higher severity is flagged.
RISE_TOLERANCE = 0.05
#: Fewer evaluated images than this gets a warning about the per-cell standard error.
FEW_IMAGES = 200


def metrics(scores: CorruptionScores, shifts: Sequence[ClassShift]) -> dict[str, float]:
    """Flat metrics (accuracies in [0, 1], ECE in [0, 1], ``n_images``), undefined ones left out."""
    acc = scores.accuracy
    values: dict[str, float] = {
        "clean_accuracy": scores.clean_accuracy,
        "mean_corruption_accuracy": scores.mean_accuracy,
        "relative_drop": scores.relative_drop,
        "clean_ece": scores.clean_ece,
        "mean_corruption_ece": scores.mean_ece,
        "n_images": float(scores.n_images),
    }
    for i, name in enumerate(scores.corruptions):
        values[f"{name}.accuracy"] = float(acc[i].mean())
        values[f"{name}.ece"] = scores.ece[i]
        for j, s in enumerate(scores.severities):
            values[f"{name}.s{s}.accuracy"] = float(acc[i, j])
    for shift in shifts:
        values[f"class.{shift.index}.corruption_accuracy"] = shift.corrupted
    return {k: float(v) for k, v in values.items() if math.isfinite(v)}


def undefined_notes(scores: CorruptionScores) -> list[str]:
    """One sentence per kind of undefined value: which metrics are left out, and why."""
    notes = []
    if not math.isfinite(scores.relative_drop):
        notes.append(
            "Clean accuracy is 0 on the evaluated images, so the relative drop (a ratio to it) is "
            "undefined and left out."
        )
    bad = [(name, k) for name, k in zip(scores.corruptions, scores.nonfinite, strict=True) if k]
    if bad:
        listed = ", ".join(f"{name} ({k} image(s) x severities)" for name, k in bad)
        notes.append(
            f"The model gave non-finite logits under {listed}: those predictions count as wrong, and "
            "the ECE of each such corruption and the mean corruption ECE are undefined and left out."
        )
    if scores.clean_nonfinite:
        notes.append(
            f"The model gave non-finite logits on {scores.clean_nonfinite} clean image(s): they count "
            "as wrong, and the clean ECE is undefined and left out."
        )
    return notes


def _pct(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else "undefined"


def summary(scores: CorruptionScores, shifts: Sequence[ClassShift]) -> list[str]:
    """Plain-language findings: the overall drop, the worst corruptions and classes, calibration."""
    names, acc = scores.corruptions, scores.accuracy
    out = [
        f"Mean corruption accuracy {_pct(scores.mean_accuracy)} against {_pct(scores.clean_accuracy)} "
        f"clean (relative drop {_pct(scores.relative_drop)}) over {len(names)} corruptions x "
        f"{len(scores.severities)} severities on {scores.n_images} test images."
    ]
    order = np.argsort(acc.mean(axis=1))
    out.append(
        "Worst corruptions: " + ", ".join(f"{names[i]} ({acc[i].mean():.1%})" for i in order[:3]) + "."
    )
    if shifts:
        weakest = min(shifts, key=lambda s: s.corrupted)
        out.append(
            f"Weakest class under shift: {weakest.name} ({weakest.clean:.1%} clean, "
            f"{weakest.corrupted:.1%} corrupted)."
        )
        biggest = max(shifts, key=lambda s: s.drop)
        if biggest is not weakest:
            out.append(
                f"Largest class drop: {biggest.name} ({biggest.clean:.1%} -> {biggest.corrupted:.1%})."
            )
    if math.isfinite(scores.mean_ece) and math.isfinite(scores.clean_ece):
        out.append(
            f"ECE under corruption averages {scores.mean_ece:.3f} against {scores.clean_ece:.3f} clean."
        )
    return out


def warnings(scores: CorruptionScores) -> list[str]:
    """Numbers not to trust: undefined values, accuracy rising with severity or above clean, few images."""
    names, sev, acc = scores.corruptions, scores.severities, scores.accuracy
    clean, n = scores.clean_accuracy, scores.n_images
    out = undefined_notes(scores)
    for i, name in enumerate(names):
        for j in range(len(sev)):
            later = acc[i, j + 1 :]
            if later.size and float(later.max()) - float(acc[i, j]) > RISE_TOLERANCE:
                t = j + 1 + int(later.argmax())
                out.append(
                    f"Accuracy under {name} rises with severity, from {acc[i, j]:.1%} at severity "
                    f"{sev[j]} to {acc[i, t]:.1%} at severity {sev[t]}: the "
                    "corruption may not degrade these images monotonically, or the model exploits it."
                )
                break
        if float(acc[i].max()) - clean > RISE_TOLERANCE:
            out.append(
                f"Accuracy under {name} ({acc[i].max():.1%}) exceeds clean accuracy ({clean:.1%}) by "
                f"more than {RISE_TOLERANCE:.0%}: check the clean predictions and the data."
            )
    if n < FEW_IMAGES:
        mca = scores.mean_accuracy
        se = float(np.sqrt(max(mca * (1 - mca), 1e-12) / n))
        out.append(
            f"Only {n} test images were corrupted: each accuracy cell has a standard error of about {se:.1%}."
        )
    return out
