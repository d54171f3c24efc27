"""Which training images a failure sits among: the labels of its nearest training neighbours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor


@dataclass
class NeighbourShares:
    """For a set of failures: how often most (more than half) of the ``k`` nearest training
    images carry the predicted label, the true label, and the mean shares. Shares in [0, 1]."""

    n: int
    majority_pred: float
    majority_true: float
    mean_share_pred: float
    mean_share_true: float


def failure_records(
    positions: list[int],
    test_index: Tensor,
    labels: Tensor,
    preds: Tensor,
    confidence: Tensor,
    neighbour_labels: Tensor,
    neighbour_similarity: Tensor,
    neighbour_train_index: Tensor,
) -> list[dict[str, Any]]:
    """One record per failure (test position): its test-set index, true and predicted class,
    confidence, the labels, cosine distances and official training indices of its ``k``
    nearest training images (nearest first), and the shares of them with the true and the
    predicted label.

    ``neighbour_*`` are (M, k) over the whole test set (rows are test positions).
    """
    out = []
    for pos in positions:
        nl = neighbour_labels[pos]
        t, q = int(labels[pos]), int(preds[pos])
        k = len(nl)
        out.append(
            {
                "position": pos,
                "index": int(test_index[pos]),
                "true": t,
                "pred": q,
                "confidence": float(confidence[pos]),
                "neighbour_labels": nl.tolist(),
                "neighbour_distances": [round(1.0 - float(s), 6) for s in neighbour_similarity[pos]],
                "neighbour_train_index": neighbour_train_index[pos].tolist(),
                "share_true": int((nl == t).sum()) / k,
                "share_pred": int((nl == q).sum()) / k,
            }
        )
    return out


def shares(records: list[dict[str, Any]]) -> NeighbourShares | None:
    """Summary of :func:`failure_records`; ``None`` for no records (the shares are undefined)."""
    if not records:
        return None
    n = len(records)
    return NeighbourShares(
        n=n,
        majority_pred=sum(r["share_pred"] > 0.5 for r in records) / n,
        majority_true=sum(r["share_true"] > 0.5 for r in records) / n,
        mean_share_pred=sum(r["share_pred"] for r in records) / n,
        mean_share_true=sum(r["share_true"] for r in records) / n,
    )
