"""The statistics of a study: intervals over seeds, differences between arms, and how
individual test images move between runs (fixed, broken, still wrong) with McNemar's test.

Every function takes plain arrays and returns plain numbers, so each can be checked by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stresslab.metrics.differences import (
    MIN_SEEDS,
    Bounds,
    Difference,
    Interval,
    mcnemar_exact,
    paired,
    pooled_mcnemar,
    t_interval,
    welch,
)

__all__ = [
    "Difference",
    "Interval",
    "align",
    "cause_transitions",
    "churn",
    "describe",
    "mcnemar_exact",
    "paired",
    "pareto_front",
    "pooled_mcnemar",
    "seed_difference",
    "t_interval",
    "take",
    "transitions",
    "welch",
]


def seed_difference(
    arm: dict[int, float | None],
    base: dict[int, float | None],
    bounds: Bounds | None,
    unpaired_because: str = "",
) -> tuple[Difference, str]:
    """``arm - base`` over seeds (values keyed by seed) and why that method was used.

    Paired by seed (:func:`paired`) when the arms share at least :data:`MIN_SEEDS` seeds with
    values and nothing in the design breaks the pairing (``unpaired_because`` is empty);
    else Welch's unpaired interval (:func:`welch`) over every value. ``bounds`` is the
    metric's range; every interval is clipped to the range of a difference.
    """
    a = {s: v for s, v in arm.items() if v is not None and math.isfinite(v)}
    b = {s: v for s, v in base.items() if v is not None and math.isfinite(v)}
    common = sorted(set(a) & set(b))
    if not unpaired_because and len(common) < MIN_SEEDS and min(len(a), len(b)) >= MIN_SEEDS:
        unpaired_because = f"only {len(common)} seeds finished in both arms"
    if unpaired_because:
        d = welch(list(a.values()), list(b.values()), bounds=bounds)
        return d, f"unpaired (Welch): {unpaired_because}"
    d = paired([a[s] for s in common], [b[s] for s in common], bounds=bounds)
    why = "paired by seed: seed s of both arms shares the data split and the batch order"
    return d, why


def describe(
    d: Difference,
    what: str,
    percent: bool = True,
    higher_is_better: bool = True,
    detectable: float | None = None,
) -> str:
    """The difference in plain words, saying when it is within seed noise and, given
    ``detectable`` (the minimum detectable difference), how small an effect the seeds see."""

    def f(v: float) -> str:
        return f"{v * 100:+.2f} points" if percent else f"{v:+.4g}"

    def size(v: float) -> str:
        return f"{v * 100:.2f} points" if percent else f"{v:.4g}"

    if not math.isfinite(d.diff):
        return f"{what}: not measured"
    can = ""
    if detectable is not None and math.isfinite(detectable):
        can = f"; with {d.n} seeds this study can detect differences of {size(detectable)} or more"
    if d.lo is None or d.hi is None:
        return f"{what} {f(d.diff)}: {d.reason}, so this is not evidence either way{can}"
    ci = f"95% {'paired' if d.method == 'paired' else 'Welch'} interval {f(d.lo)} to {f(d.hi)}"
    if d.within_noise:
        return f"{what} {f(d.diff)}: within seed noise ({ci} includes 0){can}"
    better = (d.diff > 0) == higher_is_better
    return f"{what} {f(d.diff)}: {'better' if better else 'worse'} beyond seed noise ({ci}){can}"


@dataclass(frozen=True)
class Transitions:
    """How images move from run ``a`` (before) to run ``b`` (after); boolean masks (N,)."""

    fixed: np.ndarray  # wrong in a, right in b
    broken: np.ndarray  # right in a, wrong in b
    still_wrong: np.ndarray  # wrong in both

    @property
    def counts(self) -> dict[str, int]:
        return {
            "fixed": int(self.fixed.sum()),
            "broken": int(self.broken.sum()),
            "still_wrong": int(self.still_wrong.sum()),
        }


def transitions(correct_a: np.ndarray, correct_b: np.ndarray) -> Transitions:
    """Fixed, broken and still-wrong masks from two aligned correctness vectors (N,) bool."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"correctness vectors differ in shape: {a.shape} vs {b.shape}")
    return Transitions(~a & b, a & ~b, ~a & ~b)


def cause_transitions(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    common: np.ndarray,
    causes_a: Mapping[int, str],
    causes_b: Mapping[int, str],
) -> dict[str, dict[str, Any]]:
    """Fixed / broken / still wrong per cause, from two aligned correctness vectors (N,)
    bool over the test indices ``common`` and each run's diagnosis (test index -> cause).

    For each cause: ``n``, the failures of ``a`` with that cause; ``fixed`` and
    ``still_wrong``, those right / still wrong in ``b``; ``broken``, images right in ``a``
    and wrong in ``b`` that ``b``'s diagnosis gives that cause; ``mcnemar_p`` of fixed vs
    broken (:func:`mcnemar_exact`). Causes in sorted order; failures without a diagnosed
    cause count under ``"undiagnosed"``.
    """
    t = transitions(correct_a, correct_b)
    idx = [int(i) for i in common]
    out: dict[str, dict[str, Any]] = {}

    def bump(cause: str, key: str) -> None:
        rec = out.setdefault(cause, {"n": 0, "fixed": 0, "broken": 0, "still_wrong": 0})
        rec[key] += 1

    for k in np.flatnonzero(~np.asarray(correct_a, bool)):
        cause = causes_a.get(idx[k], "undiagnosed")
        bump(cause, "n")
        bump(cause, "fixed" if t.fixed[k] else "still_wrong")
    for k in np.flatnonzero(t.broken):
        bump(causes_b.get(idx[k], "undiagnosed"), "broken")
    for rec in out.values():
        rec["mcnemar_p"] = mcnemar_exact(rec["fixed"], rec["broken"])
    return dict(sorted(out.items()))


def churn(correct: Sequence[np.ndarray]) -> float | None:
    """Mean count of images wrong in one seed and right in another, over ordered seed pairs
    of one arm: the number of "fixes" chance alone produces (``None`` for one seed)."""
    runs = [np.asarray(c, bool) for c in correct]
    if len(runs) < 2:
        return None
    counts = [int((~runs[i] & runs[j]).sum()) for i in range(len(runs)) for j in range(len(runs)) if i != j]
    return float(np.mean(counts))


def align(indexes: Sequence[np.ndarray]) -> np.ndarray:
    """Test-set indices (sorted) present in every run."""
    if not indexes:
        return np.zeros(0, dtype=np.int64)
    common = np.asarray(indexes[0])
    for ix in indexes[1:]:
        common = np.intersect1d(common, ix)
    return np.sort(common).astype(np.int64)


def take(index: np.ndarray, values: np.ndarray, common: np.ndarray) -> np.ndarray:
    """``values`` (rows follow ``index``) reordered to the test indices ``common``."""
    pos = {int(i): k for k, i in enumerate(index)}
    return values[[pos[int(i)] for i in common]]


def pareto_front(cost: Sequence[float], score: Sequence[float]) -> list[bool]:
    """Points no other point beats: none has cost <= and score >= with one strict."""
    c, s = np.asarray(cost, float), np.asarray(score, float)
    front = []
    for i in range(len(c)):
        dominated = bool(np.any((c <= c[i]) & (s >= s[i]) & ((c < c[i]) | (s > s[i]))))
        front.append(not dominated and bool(np.isfinite(c[i]) and np.isfinite(s[i])))
    return front
