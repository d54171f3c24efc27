"""Data -> matplotlib figures (Agg). Probes build figures with these; the runner saves them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor


def to_hwc(image: Tensor | np.ndarray) -> np.ndarray:
    """One image (C, H, W) in [0, 1] or 0..255 -> array (H, W) or (H, W, 3) in [0, 1]."""
    arr = (
        image.detach().cpu().float().numpy()
        if isinstance(image, Tensor)
        else np.asarray(image, dtype=np.float32)
    )
    if arr.max() > 1.0:
        arr = arr / 255.0
    arr = np.clip(arr, 0.0, 1.0)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    return arr


def show_image(ax: plt.Axes, image: Tensor | np.ndarray, title: str = "", fontsize: int = 7) -> None:
    """Draw one (C, H, W) image on ``ax`` without ticks; grayscale for one channel."""
    arr = to_hwc(image)
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def overlay_heatmap(
    ax: plt.Axes,
    image: Tensor | np.ndarray,
    heatmap: Tensor | np.ndarray,
    title: str = "",
    cmap: str = "jet",
    alpha: float = 0.5,
    diverging: bool = False,
) -> None:
    """Draw ``image`` (C, H, W) with ``heatmap`` (H, W) over it.

    A non-diverging map is scaled to [0, 1] by its max; a diverging one (signed, e.g. an
    occlusion drop) is centered on zero with a blue-white-red map.
    """
    hm = (
        heatmap.detach().cpu().float().numpy()
        if isinstance(heatmap, Tensor)
        else np.asarray(heatmap, dtype=np.float32)
    )
    show_image(ax, image, title)
    if diverging:
        m = float(np.abs(hm).max()) or 1.0
        ax.imshow(hm, cmap="bwr", vmin=-m, vmax=m, alpha=alpha, interpolation="bilinear")
    else:
        lo, hi = float(hm.min()), float(hm.max())
        norm = (hm - lo) / (hi - lo) if hi > lo else np.zeros_like(hm)
        ax.imshow(norm, cmap=cmap, vmin=0.0, vmax=1.0, alpha=alpha, interpolation="bilinear")


def grid(n: int, ncols: int, cell: float = 1.6) -> tuple[Figure, np.ndarray]:
    """A figure with ``n`` cells in rows of ``ncols``; unused cells are hidden. Returns flat axes."""
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, 1.25 * cell * nrows + 0.4), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat


def image_gallery(
    images: Tensor | Sequence[Tensor],
    titles: Sequence[str] = (),
    ncols: int = 8,
    suptitle: str = "",
) -> Figure:
    """Images (N, C, H, W) in [0, 1] (or uint8) as a grid with a small title each."""
    n = len(images)
    fig, axes = grid(max(n, 1), ncols)
    for i in range(n):
        show_image(axes[i], images[i], titles[i] if i < len(titles) else "")
    if n == 0:
        axes[0].text(0.5, 0.5, "no images", ha="center", va="center")
        axes[0].axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def _annotate(ax: plt.Axes, matrix: np.ndarray, fmt: str, dark: Callable[[float], bool]) -> None:
    """Write each cell's value in it: white on cells ``dark(value)`` says are dark, else black."""
    rows, cols = matrix.shape
    for i in range(rows):
        for j in range(cols):
            v = matrix[i, j]
            ax.text(
                j,
                i,
                format(v, fmt),
                ha="center",
                va="center",
                fontsize=6,
                color="white" if dark(v) else "black",
            )


def matrix_figure(
    matrix: np.ndarray,
    labels: Sequence[str],
    title: str = "",
    xlabel: str = "predicted",
    ylabel: str = "true",
    fmt: str = "d",
    cmap: str = "Blues",
) -> Figure:
    """A (K, K) matrix (e.g. a confusion matrix) with class labels; values annotated when K <= 20."""
    k = len(labels)
    size = min(max(4.0, 0.45 * k + 2.0), 14.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(matrix, cmap=cmap)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if k <= 30:
        ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), labels, fontsize=7)
    if k <= 20:
        hi = float(np.max(matrix)) if matrix.size else 0.0
        _annotate(ax, matrix, fmt, dark=lambda v: bool(hi) and v > hi / 2)  # "Blues": high is dark
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def clustered_matrix_figure(
    matrix: np.ndarray,
    labels: Sequence[str],
    order: Sequence[int],
    title: str = "",
    xlabel: str = "predicted",
    ylabel: str = "true",
) -> Figure:
    """A large (K, K) row-normalized confusion matrix in ``order`` (e.g. ``cluster_order``),
    every row and column labelled, for many classes.

    The diagonal (each class's accuracy, written beside its row label) is left blank
    (gray) so the color scale spans the off-diagonal shares, the confusions. The figure
    grows with K (about 0.17 inch per class, 20 inches for 100 classes, ~2,200 pixels as
    saved) so the labels stay legible when zoomed.
    """
    idx = list(order)
    k = len(idx)
    m = np.asarray(matrix, dtype=np.float64)[np.ix_(idx, idx)].copy()
    acc = np.diag(m).copy()
    np.fill_diagonal(m, np.nan)
    off = m[np.isfinite(m)]
    top = float(off.max()) if off.size and float(off.max()) > 0 else 1.0
    side = min(max(8.0, 0.17 * k + 3.0), 40.0)
    fontsize = 6 if k <= 150 else 4
    fig, ax = plt.subplots(figsize=(side, side * 0.95))
    cmap = plt.get_cmap("Blues").with_extremes(bad="0.85")
    im = ax.imshow(m, cmap=cmap, vmin=0.0, vmax=top, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="share of the true class (off the diagonal)")
    names = [labels[i] for i in idx]
    ax.set_xticks(range(k), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(k), [f"{n} ({a:.0%})" for n, a in zip(names, acc, strict=True)], fontsize=fontsize)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + " (accuracy)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def line_figure(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    marker: str = "o",
) -> Figure:
    """Several named series over a shared x axis."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, ys in series.items():
        ax.plot(list(x), list(ys), marker=marker, markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if all(float(v).is_integer() for v in x):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def heatmap_figure(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    fmt: str = ".2f",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """A (R, C) matrix of values (e.g. accuracy per corruption and severity) with row and column
    labels and every cell annotated; rows and columns need not match (unlike ``matrix_figure``)."""
    rows, cols = matrix.shape
    fig, ax = plt.subplots(figsize=(min(2.5 + 0.8 * cols, 14.0), min(1.2 + 0.32 * rows, 14.0)))
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(cols), list(col_labels), fontsize=7)
    ax.set_yticks(range(rows), list(row_labels), fontsize=7)
    lo = float(np.min(matrix)) if vmin is None else vmin
    hi = float(np.max(matrix)) if vmax is None else vmax
    mid = (lo + hi) / 2
    _annotate(ax, matrix, fmt, dark=lambda v: v <= mid)  # "viridis": low is dark
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
