"""Percentile bootstrap intervals over test images (Efron & Tibshirani, "An Introduction to
the Bootstrap", 1993, ch. 13), for statistics made of sums over images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Maps per-resample column sums (B, F) to the statistic of each resample (B,).
FromSums = Callable[[np.ndarray], np.ndarray]
CHUNK = 100  # resamples drawn at once: CHUNK x N counts in memory


def bootstrap_interval(
    values: np.ndarray,
    statistic: FromSums | None = None,
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of a statistic of the test images.

    ``values`` (N,) or (N, F) holds one row of F numbers per image. Each resample draws N
    images with replacement (a NumPy generator seeded with ``seed``, so the interval is
    reproducible) and sums their rows; ``statistic`` maps those sums (B, F) to one value per
    resample (default: column 0's sum / N, the mean, e.g. accuracy from 0/1 correctness).
    Statistics built from sums (accuracy, per-class counts for F1, per-bin sums for ECE) are
    computed for all resamples at once. The bounds are the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the ``resamples`` values; ``(nan, nan)`` when N is 0.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    x = np.asarray(values, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    stat = statistic or (lambda sums: sums[:, 0] / n)
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, resamples, CHUNK):
        b = min(CHUNK, resamples - start)
        picks = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        counts = np.bincount(picks.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        draws.append(np.asarray(stat(counts @ x), dtype=np.float64))
    lo, hi = np.quantile(np.concatenate(draws), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
