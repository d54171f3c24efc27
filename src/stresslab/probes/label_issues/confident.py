"""Confident learning (Northcutt, Jiang and Chuang, "Confident Learning: Estimating
Uncertainty in Dataset Labels", JAIR 2021) on out-of-sample probabilities, through cleanlab.

Everything here is a thin, typed layer over cleanlab's own functions (``count``,
``filter``, ``rank``), so the flagged examples are exactly cleanlab's. The one addition is
that the per-class thresholds of the confident joint may come from another held-out set
than the one searched (the validation split for the test set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from cleanlab.count import compute_confident_joint, get_confident_thresholds
from cleanlab.filter import find_label_issues
from cleanlab.rank import order_label_issues

#: Label quality scores cleanlab ranks by (``cleanlab.rank.get_label_quality_scores``).
RANK_BY = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
#: How cleanlab decides which examples are issues (``cleanlab.filter.find_label_issues``).
FILTER_BY = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


@dataclass(frozen=True)
class LabelIssues:
    """Label issues found in one set of N examples with K classes.

    ``ranked``: (M,) int64 positions of the flagged examples, most likely wrong first
    (lowest label quality score). ``scores``: (N,) label quality in [0, 1] (cleanlab's
    ``rank_by`` score; lower = more likely mislabeled). ``suggested``: (N,) int64 the most
    probable class. ``confident_joint``: (K, K) calibrated counts, rows the given label,
    columns the likely true label; rows sum to the given-label counts. ``thresholds``: (K,)
    the per-class thresholds used (mean predicted probability of class k over the examples
    labeled k, from the threshold set; 2.0 for a class absent there, so never counted).
    """

    ranked: np.ndarray
    scores: np.ndarray
    suggested: np.ndarray
    confident_joint: np.ndarray
    thresholds: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(N,) bool: flagged as a label issue."""
        m = np.zeros(len(self.scores), dtype=bool)
        m[self.ranked] = True
        return m

    @property
    def noise_rates(self) -> np.ndarray:
        """(K, K) share of the examples given label i whose true label is likely j
        (row-normalized confident joint; NaN rows for labels never given)."""
        cj = self.confident_joint.astype(np.float64)
        rows = cj.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(rows > 0, cj / np.where(rows > 0, rows, 1.0), np.nan)

    @property
    def estimated_noise_rate(self) -> float:
        """Estimated share of wrong labels in the set: off-diagonal mass of the confident
        joint, in [0, 1]; NaN for an empty set."""
        total = float(self.confident_joint.sum())
        if total <= 0:
            return math.nan
        return 1.0 - float(np.trace(self.confident_joint)) / total


def class_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-class thresholds (K,) of confident learning from held-out ``labels`` (N,) int
    and ``probs`` (N, K): the mean probability of class k over the examples labeled k
    (2.0 for classes absent from ``labels``). cleanlab's ``get_confident_thresholds``."""
    return np.asarray(get_confident_thresholds(labels, probs), dtype=np.float64)


def find_issues(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    rank_by: str = "self_confidence",
    filter_by: str = "prune_by_noise_rate",
    thresholds: np.ndarray | None = None,
) -> LabelIssues:
    """Label issues of examples with given ``labels`` (N,) int64 in 0..K-1 and
    out-of-sample class probabilities ``probs`` (N, K) (rows sum to 1).

    The confident joint is cleanlab's ``compute_confident_joint`` (calibrated), with the
    per-class ``thresholds`` (K,) when given (e.g. :func:`class_thresholds` of a validation
    set) and cleanlab's own (estimated from ``labels``/``probs``) otherwise; the issues are
    ``cleanlab.filter.find_label_issues(filter_by=...)`` on that joint, ranked by
    ``cleanlab.rank.order_label_issues(rank_by=...)``. With ``thresholds=None`` the result
    equals ``find_label_issues(labels, probs, filter_by=..., return_indices_ranked_by=...)``.

    Raises:
        ValueError: unknown ``rank_by``/``filter_by``, mismatched shapes, or fewer than two
            classes among ``labels`` (cleanlab's own message).
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {', '.join(RANK_BY)}; got {rank_by!r}")
    if filter_by not in FILTER_BY:
        raise ValueError(f"filter_by must be one of {', '.join(FILTER_BY)}; got {filter_by!r}")
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be (N, K) with N = {len(labels)}; got shape {probs.shape}")
    if thresholds is None:
        thresholds = class_thresholds(labels, probs)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    cj = np.asarray(compute_confident_joint(labels, probs, thresholds=thresholds, calibrate=True))
    # n_jobs=1: no worker processes on a shared machine; the result does not depend on it.
    mask = find_label_issues(labels, probs, filter_by=filter_by, confident_joint=cj, n_jobs=1)
    ranked = np.asarray(order_label_issues(mask, labels, probs, rank_by=rank_by), dtype=np.int64)
    scores = _quality_scores(labels, probs, rank_by)
    return LabelIssues(
        ranked=ranked,
        scores=scores,
        suggested=probs.argmax(axis=1).astype(np.int64),
        confident_joint=cj,
        thresholds=thresholds,
    )


def _quality_scores(labels: np.ndarray, probs: np.ndarray, rank_by: str) -> np.ndarray:
    from cleanlab.rank import get_label_quality_scores

    return np.asarray(get_label_quality_scores(labels, probs, method=rank_by), dtype=np.float64)
