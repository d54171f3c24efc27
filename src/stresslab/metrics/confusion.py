"""The one confusion matrix of the package, and the pairs it confuses most."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def confusion_counts(labels: Tensor, preds: Tensor, num_classes: int) -> np.ndarray:
    """Counts (K, K) int64: row = true class, column = predicted class.

    ``labels`` and ``preds`` are int tensors (N,) with values in ``0 .. num_classes - 1``.
    Agrees with ``sklearn.metrics.confusion_matrix(labels, preds, labels=range(K))``.
    """
    k = int(num_classes)
    if len(labels) != len(preds):
        raise ValueError(f"labels ({len(labels)}) and preds ({len(preds)}) differ in length")
    flat = labels.long().cpu() * k + preds.long().cpu()
    return torch.bincount(flat, minlength=k * k).view(k, k).numpy()


def row_normalized(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of class i predicted as j); empty rows stay 0."""
    support = cm.sum(axis=1, keepdims=True)
    return np.where(support > 0, cm / np.maximum(support, 1), 0.0)


def top_confused_pairs(cm: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``n`` off-diagonal cells with the largest counts, as (true, predicted), largest first.

    Cells with a zero count are left out; ties go to the cell that comes first in row-major
    order.
    """
    off = cm.copy()
    np.fill_diagonal(off, 0)
    k = off.shape[1]
    flat = np.argsort(-off, axis=None, kind="stable")[: max(n, 0)]
    return [(int(i // k), int(i % k)) for i in flat if off.flat[i] > 0]


def cluster_order(cm: np.ndarray) -> list[int]:
    """A class order (K,) that puts classes confused with one another next to each other.

    Rows of the row-normalized matrix (diagonal kept, so two classes that take each other's
    images have similar rows) are clustered hierarchically (average linkage, cosine
    distance; scipy) and the dendrogram's leaves are ordered optimally (Bar-Joseph et al.
    2001) so neighbours are as similar as the tree allows. A class with no images counts
    as perfectly classified. Fewer than 3 classes come back in their own order.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import pdist

    k = cm.shape[0]
    if k < 3:
        return list(range(k))
    rows = row_normalized(np.asarray(cm, dtype=np.float64))
    empty = rows.sum(axis=1) == 0
    rows[empty, np.flatnonzero(empty)] = 1.0
    dist = np.clip(pdist(rows, metric="cosine"), 0.0, None)
    tree = optimal_leaf_ordering(linkage(dist, method="average"), dist)
    return [int(i) for i in leaves_list(tree)]
