"""The statistics of a study: intervals over seeds, differences between arms, and how
individual test images move between runs (fixed, broken, still wrong) with McNemar's test.

Every function takes plain arrays and returns plain numbers, so each can be checked by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from stresslab.metrics.paired import mcnemar_exact as mcnemar_exact  # the study's statistics in one place


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with sample std (ddof 1) and a two-sided t-interval at ``level``.

    ``std``, ``lo`` and ``hi`` are ``None`` for fewer than two values (no spread measured).
    """

    n: int
    mean: float
    std: float | None
    lo: float | None
    hi: float | None
    level: float = 0.95


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` (Student's t; s with ddof 1)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return Interval(0, float("nan"), None, None, None, level)
    mean = float(x.mean())
    if n < 2:
        return Interval(n, mean, None, None, None, level)
    s = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * s / math.sqrt(n)
    return Interval(n, mean, s, mean - half, mean + half, level)


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` with Welch's t-interval (``lo``, ``hi``), its degrees of freedom
    and two-sided p-value; interval fields are ``None`` when either side has < 2 values."""

    diff: float
    lo: float | None
    hi: float | None
    df: float | None
    p_value: float | None
    level: float = 0.95

    @property
    def within_noise(self) -> bool | None:
        """True when the interval contains 0 (``None`` when no interval could be made)."""
        if self.lo is None or self.hi is None:
            return None
        return self.lo <= 0.0 <= self.hi


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """Welch's unequal-variance difference of means ``a - b`` (Welch 1947).

    ``se = sqrt(s_a^2/n_a + s_b^2/n_b)``; ``df`` by Welch-Satterthwaite. When both samples
    have zero spread, the interval is the point itself and ``df`` is ``None``.
    """
    x = np.asarray([v for v in a if v is not None and math.isfinite(v)], dtype=np.float64)
    y = np.asarray([v for v in b if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(x) == 0 or len(y) == 0:
        return Difference(float("nan"), None, None, None, None, level)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return Difference(diff, None, None, None, None, level)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Difference(diff, diff, diff, None, 0.0 if diff != 0 else 1.0, level)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return Difference(diff, diff - half, diff + half, float(df), p, level)


def describe(d: Difference, what: str, percent: bool = True, higher_is_better: bool = True) -> str:
    """The difference in plain words, saying when it is within seed noise."""

    def f(v: float) -> str:
        return f"{v * 100:+.2f} points" if percent else f"{v:+.4g}"

    if not math.isfinite(d.diff):
        return f"{what}: not measured"
    if d.lo is None or d.hi is None:
        return f"{what} {f(d.diff)}; one seed on a side, so no interval: this is not evidence either way"
    ci = f"95% interval {f(d.lo)} to {f(d.hi)}"
    if d.within_noise:
        return f"{what} {f(d.diff)}: within seed noise ({ci} includes 0)"
    better = (d.diff > 0) == higher_is_better
    return f"{what} {f(d.diff)}: {'better' if better else 'worse'} beyond seed noise ({ci})"


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
