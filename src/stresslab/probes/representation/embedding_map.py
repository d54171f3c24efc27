"""A 2-D map of embeddings (t-SNE) coloured by class, errors marked, top confused pairs drawn."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch.nn.functional as F
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits
from torch import Tensor

_PAIR_MARKERS = ("^", "s", "D", "P", "v")


def tsne_map(embeddings: Tensor, *, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE coordinates (N, 2) of L2-normalized embeddings (N, D) (van der Maaten and
    Hinton 2008; scikit-learn, PCA initialization, ``random_state=seed``).

    The perplexity is clipped to ``(N - 1) / 3`` so small samples still work; N must be >= 4.
    Distances in the map are not meaningful beyond neighbourhoods.
    """
    n = len(embeddings)
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    x = F.normalize(embeddings.float(), dim=1).numpy()
    perp = float(min(perplexity, (n - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
    # One thread: on a busy 2-core machine the Barnes-Hut gradient ran 8x slower with two
    # spinning OpenMP threads (37 s against 4.6 s for 1,500 points, 1,000 iterations).
    with threadpool_limits(1):
        return np.asarray(tsne.fit_transform(x), dtype=np.float64)


def map_figure(
    coords: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    class_names: Sequence[str],
    pairs: Sequence[tuple[int, int]] = (),
    title: str = "",
) -> Figure:
    """Scatter of ``coords`` (N, 2), one colour per true class; errors as crosses, and the
    errors of each confused ``(true, predicted)`` pair in ``pairs`` with their own marker and a
    legend entry. Class names sit at each class's median position."""
    k = len(class_names)
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    colors = [cmap(i % cmap.N) for i in range(k)]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    wrong = labels != preds
    for c in range(k):
        sel = (labels == c) & ~wrong
        ax.scatter(coords[sel, 0], coords[sel, 1], s=6, color=colors[c], alpha=0.6, linewidths=0)
        err = (labels == c) & wrong
        ax.scatter(coords[err, 0], coords[err, 1], s=18, color=colors[c], marker="x", linewidths=0.8)
    for j, (t, p) in enumerate(pairs[: len(_PAIR_MARKERS)]):
        sel = (labels == t) & (preds == p)
        ax.scatter(
            coords[sel, 0],
            coords[sel, 1],
            s=42,
            marker=_PAIR_MARKERS[j],
            facecolors=colors[t],
            edgecolors="black",
            linewidths=0.8,
            label=f"{class_names[t]} → {class_names[p]} ({int(sel.sum())})",
        )
    for c in range(k):
        sel = labels == c
        if sel.any():
            mx, my = np.median(coords[sel], axis=0)
            box = {"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.7, "lw": 0}
            ax.text(mx, my, class_names[c], fontsize=8, weight="bold", ha="center", va="center", bbox=box)
    ax.set_xticks([])
    ax.set_yticks([])
    if pairs:
        ax.legend(fontsize=7, loc="best", title="confused pairs (true → predicted)", title_fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
