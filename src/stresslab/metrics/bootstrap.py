"""Percentile bootstrap intervals over test images (Efron & Tibshirani, "An Introduction to
the Bootstrap", 1993, ch. 13)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Statistic = Callable[[np.ndarray], float]


def bootstrap_interval(
    values: np.ndarray,
    statistic: Statistic | None = None,
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of ``statistic`` over the rows of ``values``.

    ``values`` (N, ...) holds one row per test image; ``statistic`` maps a resampled array of
    the same shape to a float (default: the mean over axis 0, e.g. accuracy from a 0/1
    correctness vector). Rows are drawn with replacement ``resamples`` times from a NumPy
    generator seeded with ``seed``, so the interval is reproducible; the bounds are the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled statistics.
    ``(nan, nan)`` when N is 0.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    x = np.asarray(values)
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    stat = statistic or (lambda v: float(np.mean(v, axis=0)))
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples, dtype=np.float64)
    for i in range(resamples):
        draws[i] = stat(x[rng.integers(0, n, size=n)])
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
