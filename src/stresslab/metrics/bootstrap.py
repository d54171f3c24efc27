"""Percentile bootstrap intervals over test images (Efron & Tibshirani, "An Introduction to
the Bootstrap", 1993, ch. 13), for statistics made of sums over images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stresslab.metrics.calibration import DEFAULT_BINS

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


def f1_columns(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """(N, 3K) per-image columns whose sums give, per class, the true count, the predicted
    count and the true positives (for :func:`macro_f1_from_sums`)."""
    eye = np.eye(k)
    return np.concatenate([eye[labels], eye[preds], eye[labels] * (labels == preds)[:, None]], axis=1)


def macro_f1_from_sums(sums: np.ndarray) -> np.ndarray:
    """Macro F1 (B,) from summed :func:`f1_columns` (B, 3K): mean over the classes present
    among the labels of ``2 TP / (true + predicted)``, as the evaluation probe (scikit-learn's
    ``f1_score(average="macro")`` over those classes)."""
    true, pred, tp = np.split(sums, 3, axis=1)
    present = true > 0
    f1 = 2 * tp / np.maximum(true + pred, 1e-12)
    return np.asarray((f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1))


def ece_columns(confidence: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """(N, 2 * n_bins) per-image columns whose sums give each equal-width bin's summed
    confidence and summed correctness (bins as :func:`equal_width_bins`)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, np.clip(confidence, 0.0, 1.0), side="right") - 1, 0, n_bins - 1)
    onehot = np.eye(n_bins)[index]
    return np.concatenate([onehot * confidence[:, None], onehot * correct[:, None]], axis=1)


def ece_from_sums(sums: np.ndarray, n: int) -> np.ndarray:
    """Top-label ECE (B,) of N = ``n`` images from summed :func:`ece_columns`:
    ``sum_b (n_b / N) |acc_b - conf_b| = sum_b |hits_b - conf_b| / N`` (Guo et al. 2017)."""
    conf, hits = np.split(sums, 2, axis=1)
    return np.asarray(np.abs(hits - conf).sum(axis=1) / n)
