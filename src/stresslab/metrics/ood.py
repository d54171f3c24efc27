"""Detection metrics for out-of-distribution scores and failure scores.

Every function takes two score arrays, ``inside`` (N,) for the in-distribution images (or a
model's correct predictions) and ``outside`` (M,) for the out-of-distribution images (or its
errors), where a higher score means "more out of distribution" (more likely an error). Work
is in float64; ties count half, as in scikit-learn's ``roc_auc_score``.

Conventions (Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
Out-of-Distribution Examples in Neural Networks", ICLR 2017; Liu et al., "Energy-based
Out-of-distribution Detection", NeurIPS 2020):

- AUROC: the probability that an outside image scores higher than an inside one, in [0, 1]
  (0.5: no separation).
- AUPR-out / AUPR-in: average precision (scikit-learn's step-wise sum) with the outside
  (resp. inside, on the negated score) images as positives.
- FPR@95TPR: the share of outside images accepted as inside when the threshold accepts 95%
  of the inside images (inside = positive), in [0, 1]; lower is better.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata
from torch import Tensor


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def auroc(inside: Tensor | np.ndarray, outside: Tensor | np.ndarray) -> float:
    """P(score of an outside image > score of an inside image), ties half; NaN if a side is empty.

    The Mann-Whitney U statistic over average ranks, O((N + M) log(N + M)).
    """
    a, b = _np(inside), _np(outside)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    ranks = rankdata(np.concatenate([a, b]))
    u = ranks[len(a) :].sum() - len(b) * (len(b) + 1) / 2
    return float(u / (len(a) * len(b)))


def average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
    """Average precision of scores (higher = positive): sum over recall steps of precision,
    as scikit-learn's ``average_precision_score`` (tied scores form one step)."""
    if len(positive) == 0:
        return math.nan
    scores = np.concatenate([positive, negative])
    is_pos = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], is_pos[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # last position of each tie group
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0.0, tp]) / len(positive)
    return float((precision * recall_step).sum())


def aupr_out(inside: Tensor | np.ndarray, outside: Tensor | np.ndarray) -> float:
    """Average precision with the outside images as positives (score as given)."""
    return average_precision(_np(outside), _np(inside))


def aupr_in(inside: Tensor | np.ndarray, outside: Tensor | np.ndarray) -> float:
    """Average precision with the inside images as positives (score negated)."""
    return average_precision(-_np(inside), -_np(outside))


def fpr_at_tpr(inside: Tensor | np.ndarray, outside: Tensor | np.ndarray, tpr: float = 0.95) -> float:
    """Share of outside images with a score <= the smallest threshold that accepts (score <=
    threshold) at least ``tpr`` of the inside images; NaN if a side is empty.

    The first point of scikit-learn's ``roc_curve`` (inside positive, negated score) whose
    true positive rate reaches ``tpr``.
    """
    a, b = _np(inside), _np(outside)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    k = max(1, math.ceil(tpr * len(a) - 1e-9))
    threshold = np.sort(a)[k - 1]
    return float((b <= threshold).mean())


def detection_metrics(inside: Tensor | np.ndarray, outside: Tensor | np.ndarray) -> dict[str, float]:
    """``auroc``, ``aupr_in``, ``aupr_out`` and ``fpr95`` of one score on one pair of sets."""
    return {
        "auroc": auroc(inside, outside),
        "aupr_in": aupr_in(inside, outside),
        "aupr_out": aupr_out(inside, outside),
        "fpr95": fpr_at_tpr(inside, outside, 0.95),
    }
