"""k-means on embeddings and how well its clusters match the labels.

The embeddings are L2-normalized first, so k-means, the silhouette and the cosine
neighbours elsewhere in the probe share one geometry (on the unit sphere, squared
Euclidean distance is ``2 - 2 cos``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.metrics.cluster import contingency_matrix
from threadpoolctl import threadpool_limits
from torch import Tensor


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Cluster purity in [0, 1]: the share of points whose cluster's most common label is theirs.

    ``sum_c max_k n(c, k) / N`` over clusters ``c`` and classes ``k`` (Manning et al. 2008,
    "Introduction to Information Retrieval", 16.3). 1 means every cluster holds one class.
    """
    if len(labels) == 0:
        raise ValueError("purity of an empty set is undefined")
    table = contingency_matrix(labels, clusters)  # (classes, clusters)
    return float(table.max(axis=0).sum() / table.sum())


@dataclass
class ClusterReport:
    """k-means against the labels on ``n`` embeddings.

    ``table[c][k]``: how many points of cluster ``c`` carry label ``k`` (rows: clusters
    0..C-1, columns: classes 0..K-1). ``silhouette`` is ``None`` when it is undefined
    (fewer than 2 clusters, or as many clusters as points).
    """

    n: int
    n_clusters: int
    purity: float
    nmi: float
    ari: float
    silhouette: float | None
    table: list[list[int]]
    assignments: list[int]


def cluster_report(
    embeddings: Tensor, labels: Tensor, n_clusters: int, *, seed: int, n_init: int = 4
) -> ClusterReport:
    """k-means (scikit-learn, ``random_state=seed``) with ``n_clusters`` clusters on L2-normalized
    embeddings (N, D), scored against ``labels`` (N,) int64 in [0, K).

    Purity, NMI (arithmetic normalization, scikit-learn's default) and ARI against the labels;
    silhouette (Euclidean on the normalized embeddings) of the k-means clusters.
    """
    n = len(labels)
    if n == 0:
        raise ValueError("k-means needs at least one embedding")
    k = max(1, min(int(n_clusters), n))
    x = F.normalize(embeddings.float(), dim=1).numpy().astype(np.float64)
    y = labels.long().numpy()
    # One thread, as for the other scikit-learn fits here (busy machines: see linear.py).
    with threadpool_limits(1):
        assign = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x).labels_.astype(np.int64)
        n_found = len(np.unique(assign))
        sil = float(silhouette_score(x, assign, metric="euclidean")) if 2 <= n_found < n else None
    num_classes = max(int(y.max()) + 1, 1)
    table = np.zeros((k, num_classes), dtype=np.int64)
    np.add.at(table, (assign, y), 1)
    return ClusterReport(
        n=n,
        n_clusters=k,
        purity=purity(y, assign),
        nmi=float(normalized_mutual_info_score(y, assign)),
        ari=float(adjusted_rand_score(y, assign)),
        silhouette=sil,
        table=table.tolist(),
        assignments=assign.tolist(),
    )


def majority_labels(table: list[list[int]]) -> list[int]:
    """The most common class of each cluster (row of ``table``); lowest class on ties."""
    return [int(torch.tensor(row).argmax()) for row in table]
