"""Galleries of the representation probe: a query with its neighbours, duplicate pairs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor

from stresslab.report.figures import show_image

_TRUE, _PRED = "#1a7f37", "#cf222e"  # green: the true class, red: the wrongly predicted class


@dataclass
class NeighbourRow:
    """One gallery row: a test image (C, H, W) in [0, 1] and its nearest training images.

    ``labels`` are the neighbours' classes and ``distances`` their cosine distances
    (``1 - similarity``, in [0, 2]), nearest first.
    """

    query: Tensor
    title: str
    true: int
    pred: int
    neighbours: Tensor
    labels: Sequence[int]
    distances: Sequence[float]


def neighbour_gallery(rows: Sequence[NeighbourRow], class_names: Sequence[str], suptitle: str) -> Figure:
    """One row per query: the query, then its neighbours titled with label and cosine distance;
    a neighbour's title is green when it carries the query's true class, red when it carries
    the (wrong) predicted class."""
    ncols = 1 + max((len(r.labels) for r in rows), default=0)
    nrows = max(1, len(rows))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.5 * ncols, 1.75 * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, r in enumerate(rows):
        show_image(axes[i, 0], r.query, r.title)
        axes[i, 0].axis("on")
        for spine in axes[i, 0].spines.values():
            spine.set_linewidth(2)
        for j, (label, dist) in enumerate(zip(r.labels, r.distances, strict=True)):
            ax = axes[i, j + 1]
            show_image(ax, r.neighbours[j], f"{class_names[label][:10]}\nd={dist:.3f}")
            color = _TRUE if label == r.true else _PRED if label == r.pred else "black"
            ax.title.set_color(color)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no failures", ha="center", va="center")
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def pair_gallery(
    test_images: Tensor,
    train_images: Tensor,
    test_titles: Sequence[str],
    train_titles: Sequence[str],
    suptitle: str,
    pairs_per_row: int = 4,
) -> Figure:
    """Test images (N, C, H, W) next to their matching training images, ``pairs_per_row`` pairs
    to a row (test left, training right)."""
    n = len(test_images)
    per_row = max(1, min(pairs_per_row, n))
    nrows = max(1, -(-n // per_row))
    fig, axes = plt.subplots(
        nrows, 2 * per_row, figsize=(1.5 * 2 * per_row, 1.75 * nrows + 0.4), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, per_row)
        show_image(axes[r, 2 * c], test_images[i], test_titles[i])
        show_image(axes[r, 2 * c + 1], train_images[i], train_titles[i])
        axes[r, 2 * c].axis("on")
        axes[r, 2 * c + 1].axis("on")
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "none found", ha="center", va="center")
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig
