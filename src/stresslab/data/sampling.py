"""One seeded, class-stratified sampler for the whole package.

Validation splits, training and test subsets, and every probe that works on a sample of
the test set (``ProbeContext.sample``) draw through :func:`stratified_sample`, so the same
labels, size and seed give the same positions everywhere and probe results join per image.
For a fixed seed the within-class order is fixed, so a larger sample contains a smaller
one class by class (up to largest-remainder rounding of the quotas).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _class_quotas(counts: np.ndarray, k: int, caps: np.ndarray) -> np.ndarray:
    """Per-class sample counts summing to ``min(k, caps.sum())``, proportional to ``counts``.

    Largest-remainder rounding, capped by ``caps``; every class with a cap above zero gets
    at least one sample when ``k`` allows. Ties go to the lower class index.
    """
    k = min(k, int(caps.sum()))
    ideal = counts * (k / max(int(counts.sum()), 1))
    quota = np.minimum(np.floor(ideal).astype(np.int64), caps)
    present = caps > 0
    if k >= int(present.sum()):
        quota[present & (quota == 0)] = 1
    while quota.sum() > k:  # only after the at-least-one rule: take from the most over-served
        quota[np.argmax(np.where(quota > 1, quota - ideal, -np.inf))] -= 1
    while quota.sum() < k:
        quota[np.argmax(np.where(quota < caps, ideal - quota, -np.inf))] += 1
    return quota


def stratified_sample(labels: Tensor, k: int, *, seed: int, keep_one_out: bool = False) -> Tensor:
    """Seeded random sample of ``k`` positions of ``labels``, stratified by class.

    Each class gets a share of ``k`` proportional to its size (largest-remainder rounding),
    and at least one position when ``k`` is at least the number of classes present. With
    ``keep_one_out=True`` at most ``n_c - 1`` positions of a class are taken, so the
    complement keeps every class too (the sample may then be smaller than ``k``).

    Args:
        labels: int64 (N,), values >= 0.
        k: requested sample size, clipped to what is available.
        seed: the sample depends only on ``labels``, ``k`` and ``seed``.

    Returns:
        Sorted int64 positions into ``labels``.
    """
    n = len(labels)
    if n == 0 or k <= 0:
        return torch.empty(0, dtype=torch.long)
    y = labels.to(torch.long).cpu().numpy()
    counts = np.bincount(y)
    caps = np.maximum(counts - 1, 0) if keep_one_out else counts
    quota = _class_quotas(counts, k, caps)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    # A stable sort by label groups positions by class, keeping the random order inside
    # each class (numpy's stable sort: torch's is ~100x slower on CPU here).
    grouped = perm[np.argsort(y[perm], kind="stable")]
    grouped_labels = y[grouped]
    starts = np.cumsum(counts) - counts
    rank = np.arange(n) - starts[grouped_labels]
    return torch.from_numpy(np.sort(grouped[rank < quota[grouped_labels]]))
