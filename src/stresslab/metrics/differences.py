"""Differences between two arms of a study over seeds, and tests on the test images they share.

Intervals over seeds (Student's t), paired by seed or unpaired (Welch), a sign-flip
permutation p-value, the exact McNemar test for one seed pair and its stratified version for
all seed pairs pooled, Holm's correction, and clipping of every interval to what the metric
can take. Every function takes plain numbers and returns plain numbers, so each can be
checked by hand.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from stresslab.metrics.paired import mcnemar_exact

Bounds = tuple[float, float]  # the range a metric can take, e.g. (0.0, 1.0) for an accuracy
MIN_SEEDS = 3  # fewer values per side cannot bound a difference (the t quantile explodes)
EXACT_SIGN_FLIPS = 16  # enumerate all 2^n sign flips up to this many pairs


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)


def clip(lo: float, hi: float, bounds: Bounds | None) -> tuple[float, float]:
    """``(lo, hi)`` cut to ``bounds`` (unchanged when ``bounds`` is ``None``)."""
    if bounds is None:
        return lo, hi
    return min(max(lo, bounds[0]), bounds[1]), max(min(hi, bounds[1]), bounds[0])


def difference_bounds(bounds: Bounds | None) -> Bounds | None:
    """The range of ``a - b`` when ``a`` and ``b`` lie in ``bounds``: ``(lo - hi, hi - lo)``."""
    return None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])


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


def t_interval(values: Sequence[float], level: float = 0.95, bounds: Bounds | None = None) -> Interval:
    """``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` (Student's t; s with ddof 1), clipped
    to ``bounds`` (the range the values can take) when given."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(0, float("nan"), None, None, None, level)
    mean = float(x.mean())
    if n < 2:
        return Interval(n, mean, None, None, None, level)
    s = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * s / math.sqrt(n)
    lo, hi = clip(mean - half, mean + half, bounds)
    return Interval(n, mean, s, lo, hi, level)


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` with a ``level`` interval (``lo``, ``hi``), its degrees of freedom
    and two-sided p-value.

    ``method`` is ``"paired"`` (per-seed differences, Student's t on them) or ``"welch"``
    (unpaired). ``n`` is the number of pairs (paired) or the smaller side (Welch).
    ``p_permutation`` is the exact sign-flip p-value of paired differences. The interval
    fields are ``None`` when fewer than :data:`MIN_SEEDS` values per side exist; ``reason``
    then says so. ``sd`` is the standard deviation of one seed's difference (paired: of the
    per-seed differences; Welch: ``sqrt(s_a^2 + s_b^2)``), the input to the detectable
    difference.
    """

    diff: float
    lo: float | None
    hi: float | None
    df: float | None
    p_value: float | None
    level: float = 0.95
    method: str = "welch"
    n: int = 0
    sd: float | None = None
    p_permutation: float | None = None
    reason: str = ""

    @property
    def within_noise(self) -> bool | None:
        """True when the interval contains 0 (``None`` when no interval could be made)."""
        if self.lo is None or self.hi is None:
            return None
        return self.lo <= 0.0 <= self.hi


def _too_few(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''} cannot bound a difference (at least {MIN_SEEDS} are needed)"


def welch(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, bounds: Bounds | None = None
) -> Difference:
    """Welch's unequal-variance difference of means ``a - b`` (Welch 1947).

    ``se = sqrt(s_a^2/n_a + s_b^2/n_b)``; ``df`` by Welch-Satterthwaite. When both samples
    have zero spread, the interval is the point itself and ``df`` is ``None``. ``bounds`` is
    the range of one value (the interval is clipped to the range of a difference). No
    interval with fewer than :data:`MIN_SEEDS` values on a side.
    """
    x, y = _finite(a), _finite(b)
    if len(x) == 0 or len(y) == 0:
        return Difference(float("nan"), None, None, None, None, level, "welch", 0, reason="no values")
    diff = float(x.mean() - y.mean())
    n = min(len(x), len(y))
    sd = math.sqrt(x.var(ddof=1) + y.var(ddof=1)) if n >= 2 else None
    if n < MIN_SEEDS:
        return Difference(diff, None, None, None, None, level, "welch", n, sd, reason=_too_few(n))
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Difference(diff, diff, diff, None, 0.0 if diff != 0 else 1.0, level, "welch", n, sd)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    lo, hi = clip(diff - half, diff + half, difference_bounds(bounds))
    return Difference(diff, lo, hi, float(df), p, level, "welch", n, sd)


def paired(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, bounds: Bounds | None = None
) -> Difference:
    """Paired difference ``a_i - b_i`` (``a``, ``b`` aligned by seed; pairs with a missing or
    non-finite side are dropped): mean ``d``, Student's t-interval ``d +- t_{n-1} s_d/sqrt(n)``,
    the two-sided t-test p-value and the exact sign-flip p-value (:func:`sign_flip_p`).

    ``bounds`` is the range of one value; the interval is clipped to the range of a
    difference. Identical arms give ``lo == hi == 0``. No interval for fewer than
    :data:`MIN_SEEDS` pairs.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need the same length; got {len(a)} and {len(b)}")
    d = _finite(
        [
            x - y if x is not None and y is not None and math.isfinite(x) and math.isfinite(y) else None
            for x, y in zip(a, b, strict=True)
        ]
    )
    n = len(d)
    if n == 0:
        return Difference(float("nan"), None, None, None, None, level, "paired", 0, reason="no seed pairs")
    diff = float(d.mean())
    sd = float(d.std(ddof=1)) if n >= 2 else None
    if n < MIN_SEEDS or sd is None:
        return Difference(diff, None, None, None, None, level, "paired", n, sd, reason=_too_few(n))
    p_perm = sign_flip_p(d)
    if sd == 0.0:
        return Difference(diff, diff, diff, None, 0.0 if diff != 0 else 1.0, level, "paired", n, sd, p_perm)
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, n - 1))
    lo, hi = clip(diff - half, diff + half, difference_bounds(bounds))
    return Difference(diff, lo, hi, float(n - 1), p, level, "paired", n, sd, p_perm)


def sign_flip_p(diffs: Sequence[float] | np.ndarray, draws: int = 100_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of paired differences (Fisher 1935): the share
    of sign assignments whose ``|mean|`` is at least the observed one. Exact (all ``2^n``
    flips, the observed one included) for ``n <=`` :data:`EXACT_SIGN_FLIPS`; else ``draws``
    random flips plus the observed one. With ``n`` pairs the smallest possible p is
    ``2 / 2^n`` (0.25 for 3 seeds), so it can only speak for many seeds."""
    d = _finite(list(diffs))
    n = len(d)
    if n == 0:
        return 1.0
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= EXACT_SIGN_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        return float(np.mean(np.abs(signs @ d) / n >= observed - tol))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(draws, n))
    hits = int(np.sum(np.abs(signs @ d) / n >= observed - tol))
    return (hits + 1) / (draws + 1)


@dataclass(frozen=True)
class Pooled:
    """All seed pairs' discordant test images in one stratified exact test."""

    fixed: int
    broken: int
    strata: int
    p_value: float
    odds_ratio: float  # Mantel-Haenszel estimate of the common odds: fixed / broken (inf, nan)


def pooled_mcnemar(fixed: Sequence[int], broken: Sequence[int]) -> Pooled:
    """Stratified exact McNemar test over seed pairs (one stratum per seed pair).

    Each test image of stratum ``k`` is a matched pair (baseline seed k, arm seed k). Given
    its ``n_k = fixed_k + broken_k`` discordant images, ``fixed_k ~ Binomial(n_k, psi/(1+psi))``
    where ``psi`` is the stratum's odds of fixing over breaking. Assuming one common ``psi``
    in every stratum (the Mantel-Haenszel assumption), the sum of these independent binomials
    with one success probability is ``Binomial(sum n_k, psi/(1+psi))``, so the exact
    conditional test of ``psi = 1`` stratified by seed pair *is* the exact binomial test on
    the pooled counts, and ``sum fixed / sum broken`` is the Mantel-Haenszel estimate of
    ``psi`` for matched pairs. A common ``psi`` is the hypothesis worth testing here: every
    seed pair applies the same change to the same test images. The strata are independent
    training runs; within a stratum images are treated as independent, as in McNemar's test.
    """
    if len(fixed) != len(broken):
        raise ValueError(f"fixed and broken need one count per seed pair; got {len(fixed)} and {len(broken)}")
    if any(int(c) < 0 for c in (*fixed, *broken)):
        raise ValueError(f"counts must be >= 0; got fixed={list(fixed)}, broken={list(broken)}")
    f, b = int(sum(fixed)), int(sum(broken))
    odds = f / b if b else (float("inf") if f else float("nan"))
    return Pooled(f, b, len(fixed), mcnemar_exact(f, b), odds)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (Holm 1979): sort the m p-values ascending,
    ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``. ``None`` entries are left out of
    ``m`` and stay ``None``. Rejecting where ``adj < alpha`` controls the family-wise error."""
    given = [(i, float(p)) for i, p in enumerate(p_values) if p is not None and math.isfinite(p)]
    out: list[float | None] = [None] * len(p_values)
    m = len(given)
    running = 0.0
    for rank, (i, p) in enumerate(sorted(given, key=lambda item: item[1])):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
