"""Two classifiers on the same test images: which images one gets right and the other wrong.

Every function takes aligned per-image arrays (the same test image in the same row) and
returns plain numbers, so each can be checked by hand.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Exact McNemar test (McNemar 1947): two-sided binomial test of ``fixed`` successes in
    ``fixed + broken`` discordant pairs at p = 1/2, i.e. ``min(1, 2 * P(X <= min(b, c)))``.
    1.0 when there are no discordant pairs."""
    n = fixed + broken
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * stats.binom.cdf(min(fixed, broken), n, 0.5)))


def negative_flips(correct_old: np.ndarray, correct_new: np.ndarray) -> np.ndarray:
    """(N,) bool: images the old model classifies correctly and the new one does not
    (Yan et al., "Positive-Congruent Training", CVPR 2021)."""
    a, b = np.asarray(correct_old, bool), np.asarray(correct_new, bool)
    if a.shape != b.shape:
        raise ValueError(f"correctness vectors differ in shape: {a.shape} vs {b.shape}")
    return a & ~b


def negative_flip_rate(correct_old: np.ndarray, correct_new: np.ndarray) -> float:
    """Share of all N test images that are negative flips (Yan et al. 2021), in [0, 1];
    0.0 for N = 0."""
    flips = negative_flips(correct_old, correct_new)
    return float(flips.mean()) if flips.size else 0.0
