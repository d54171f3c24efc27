"""Cosine nearest neighbours in torch: chunked matrix products with a top-k per chunk.

Used for a failure's nearest training images, kNN classification and near-duplicates.
Keys are normalized once; each chunk of queries costs one (chunk, D) x (D, N) product and
one ``topk``, so memory stays at ``chunk x N`` similarities whatever the number of queries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_topk(
    queries: Tensor,
    keys: Tensor,
    k: int,
    *,
    chunk: int | None = None,
    keys_normalized: bool = False,
) -> tuple[Tensor, Tensor]:
    """The ``k`` keys most cosine-similar to each query, most similar first.

    Args:
        queries: float (Q, D).
        keys: float (N, D) on the same device; rows of zeros have similarity 0 to everything.
        k: neighbours per query, clipped to N.
        chunk: queries per matrix product (memory: ``chunk x N`` floats); default: as many as
            keep that near 2^25 similarities (128 MiB), between 1 and 4096.
        keys_normalized: the keys already have unit L2 norm (skips normalizing them again).

    Returns:
        ``(similarity, index)``: float (Q, k) cosine similarities in [-1, 1], descending along
        each row, and int64 (Q, k) row positions in ``keys``. Cosine distance is
        ``1 - similarity``.
    """
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"queries (Q, D) and keys (N, D) must share D, got {tuple(queries.shape)} and {tuple(keys.shape)}"
        )
    k = min(int(k), len(keys))
    if k <= 0 or len(queries) == 0:
        empty = torch.empty(len(queries), max(k, 0))
        return empty, empty.long()
    chunk = chunk or max(1, min(4096, 2**25 // len(keys)))
    keys_n = keys.float() if keys_normalized else F.normalize(keys.float(), dim=1)
    keys_t = keys_n.t().contiguous()
    sims, idx = [], []
    for i in range(0, len(queries), chunk):
        q = F.normalize(queries[i : i + chunk].float(), dim=1)
        s, j = torch.topk(q @ keys_t, k, dim=1, largest=True, sorted=True)
        sims.append(s)
        idx.append(j)
    return torch.cat(sims), torch.cat(idx)


def knn_vote(neighbour_labels: Tensor, num_classes: int) -> Tensor:
    """Majority vote over each row of neighbour labels, ties broken by the nearest neighbour.

    Among the classes with the most votes, the one whose first neighbour ranks nearest wins
    (with k = 1 this is the nearest neighbour's label; with k = 2 and two classes, too).

    Args:
        neighbour_labels: int64 (Q, k), nearest first.
        num_classes: K; labels must be in [0, K).

    Returns:
        int64 (Q,) predicted classes.
    """
    q, k = neighbour_labels.shape
    if k == 0:
        raise ValueError("knn_vote needs at least one neighbour per query")
    votes = torch.zeros(q, num_classes, dtype=torch.long, device=neighbour_labels.device)
    votes.scatter_add_(1, neighbour_labels, torch.ones_like(neighbour_labels))
    # First rank at which each class appears (k where it does not): scatter_reduce "amin".
    ranks = torch.arange(k, device=neighbour_labels.device).expand(q, k)
    first = torch.full((q, num_classes), k, dtype=torch.long, device=neighbour_labels.device)
    first.scatter_reduce_(1, neighbour_labels, ranks, reduce="amin")
    # More votes always wins (a vote is worth k + 1 > any rank difference); then nearer first.
    return (votes * (k + 1) - first).argmax(dim=1)


def knn_classify(
    query_emb: Tensor,
    key_emb: Tensor,
    key_labels: Tensor,
    k: int,
    num_classes: int,
    *,
    chunk: int | None = None,
) -> Tensor:
    """kNN predictions (Q,) of queries (Q, D) from labelled keys (N, D), (N,): cosine, majority
    vote with ties to the nearest (:func:`knn_vote`)."""
    _, idx = cosine_topk(query_emb, key_emb, k, chunk=chunk)
    return knn_vote(key_labels[idx], num_classes)
