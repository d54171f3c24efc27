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
