"""Slices of the failures: by (true, predicted) pair and cause, and groups of the test set
in the model's embedding space with an unusually high error rate.

The embedding slices follow Domino (Eyuboglu et al., ICLR 2022) and Deepchecks' weak-segments
check in spirit: cluster the test embeddings (k-means), keep a cluster when its error rate is
at least twice the overall rate and a one-sided binomial test against the overall rate is
significant after a Bonferroni correction for the number of clusters.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from scipy.stats import binomtest
from sklearn.cluster import KMeans


def pair_slices(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failures grouped by (true, predicted, cause), largest first: ``true``, ``predicted``,
    ``cause``, ``n`` and ``indices`` (official test indices)."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for r in rows:
        groups.setdefault((r["true"], r["predicted"], r["cause"]), []).append(int(r["index"]))
    out = [
        {"true": t, "predicted": q, "cause": c, "n": len(ix), "indices": ix}
        for (t, q, c), ix in groups.items()
    ]
    return sorted(out, key=lambda s: (-s["n"], s["true"], s["predicted"], s["cause"]))


def embedding_slices(
    embeddings: np.ndarray,
    wrong: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    properties: dict[str, np.ndarray],
    *,
    n_clusters: int | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    max_fit: int = 2000,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Weak clusters of the test set in embedding space.

    Args:
        embeddings: (N, D) test embeddings; wrong: (N,) bool misclassified; labels: (N,) true class.
        properties: name -> (N,) per-image properties describing each slice (means).
        n_clusters: default ``2 * K`` capped at N // 20 (at least 2).
        alpha: family-wise significance level (Bonferroni over the clusters).
        max_fit: k-means is fitted on a seeded sample of at most this many images.

    Returns:
        The kept slices (``cluster``, ``n``, ``errors``, ``error_rate``, ``ratio``,
        ``p_value``, ``classes``: the three most common true classes with shares,
        property means, ``positions``) by error count, and the settings used.
    """
    n = len(wrong)
    k = n_clusters or max(2, min(2 * len(class_names), n // 20))
    settings: dict[str, Any] = {
        "n_clusters": k,
        "alpha": alpha,
        "min_ratio": 2.0,
        "fitted_on": min(n, max_fit),
    }
    if n < 2 * k or not wrong.any() or embeddings.ndim != 2 or embeddings.shape[1] == 0:
        settings["skipped"] = "too few test images or errors, or no embeddings"
        return [], settings
    x = embeddings.astype(np.float32)
    # Fitted on a seeded sample, then every image assigned: the cost stays small on large sets.
    fit_on = np.random.default_rng(seed).choice(n, min(n, max_fit), replace=False)
    assign = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x[fit_on]).predict(x)
    rate = float(wrong.mean())
    settings["overall_error_rate"] = rate
    out = []
    for c in range(k):
        member = assign == c
        m, e = int(member.sum()), int(wrong[member].sum())
        if m == 0 or e / m < 2 * rate:
            continue
        p = float(binomtest(e, m, rate, alternative="greater").pvalue)
        if p * k > alpha:
            continue
        counts = Counter(labels[member].tolist())
        out.append(
            {
                "cluster": c,
                "n": m,
                "errors": e,
                "error_rate": e / m,
                "ratio": (e / m) / rate,
                "p_value": min(1.0, p * k),
                "classes": [[class_names[cls], cnt / m] for cls, cnt in counts.most_common(3)],
                **{
                    name: float(np.nanmean(v[member])) if np.isfinite(v[member]).any() else None
                    for name, v in properties.items()
                },
                "positions": np.flatnonzero(member & wrong).tolist(),
            }
        )
    return sorted(out, key=lambda s: -s["errors"]), settings
