"""The study's figures: overlaid learning curves, per-class deltas, Grad-CAM side by side,
accuracy against cost with the Pareto front. Built on ``stresslab.report.figures``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stresslab.report.figures import grid, overlay_heatmap, plt, show_image

PANELS = (
    ("train_loss", "training loss"),
    ("val_loss", "validation loss"),
    ("train_acc", "training accuracy"),
    ("val_acc", "validation accuracy"),
)


def curves_figure(curves: dict[str, dict[str, Any]]) -> Figure:
    """Loss and accuracy per epoch of every arm: the mean over seeds with a +-1 std band."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4))
    for ax, (key, title) in zip(axes.ravel(), PANELS, strict=True):
        for arm, c in curves.items():
            epochs = np.asarray(c["epoch"], float)
            if not len(epochs):
                continue
            mean = np.asarray(c[key]["mean"], float)
            std = np.asarray(c[key]["std"], float)
            (line,) = ax.plot(epochs, mean, marker="o", markersize=3, label=arm)
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def class_delta_figure(per_class: dict[str, list[dict[str, Any]]], baseline: str) -> Figure | None:
    """Per-class accuracy difference to the baseline with its 95% interval, one marker per arm
    (None when there is nothing to compare or more than 20 classes)."""
    arms = [a for a, rows in per_class.items() if a != baseline and rows and "diff" in rows[0]]
    if not arms or len(per_class[arms[0]]) > 20:
        return None
    classes = [r["class"] for r in per_class[arms[0]]]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(classes) + 1.5))
    for j, arm in enumerate(arms):
        y = np.arange(len(classes)) + (j - (len(arms) - 1) / 2) * 0.8 / max(1, len(arms))
        rows = per_class[arm]
        d = np.array([r["diff"] for r in rows], float) * 100
        lo = np.array([r["lo"] if r["lo"] is not None else np.nan for r in rows], float) * 100
        hi = np.array([r["hi"] if r["hi"] is not None else np.nan for r in rows], float) * 100
        err = np.vstack([np.nan_to_num(d - lo), np.nan_to_num(hi - d)])
        ax.errorbar(d, y, xerr=err, fmt="o", markersize=4, capsize=2, label=arm)
    ax.axvline(0, color="gray", linewidth=1)
    lo_x, hi_x = ax.get_xlim()
    ax.set_xlim(max(lo_x, -100.0), min(hi_x, 100.0))  # wider intervals (2 seeds) run off the axis
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"accuracy difference to {baseline} (points, 95% interval)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gradcam_figure(
    images: np.ndarray,
    left: tuple[str, np.ndarray, np.ndarray, np.ndarray],
    right: tuple[str, np.ndarray, np.ndarray, np.ndarray],
    titles: Sequence[str],
    class_names: Sequence[str],
) -> Figure:
    """Rows of image | left run's Grad-CAM | right run's Grad-CAM; each side is
    ``(name, maps (N, H, W), predicted classes, confidences)``."""
    n = len(images)
    fig, axes = grid(3 * n, 3, cell=1.9)
    for i in range(n):
        show_image(axes[3 * i], images[i], titles[i])
        for k, (name, maps, pred, conf) in enumerate((left, right), start=1):
            label = f"{name}: {class_names[int(pred[i])]} {float(conf[i]):.2f}"
            overlay_heatmap(axes[3 * i + k], images[i], maps[i], label)
    fig.tight_layout()
    return fig


def pareto_figure(rows: list[dict[str, Any]]) -> Figure:
    """Accuracy against FLOPs per image (log scale) of the grid's arms; the Pareto front joined."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    pts = [(r["flops"], r["accuracy"], r["arm"], r["pareto"]) for r in rows if r["flops"]]
    for flops, acc, arm, front in pts:
        ax.scatter([flops], [acc * 100], color="C3" if front else "C0", zorder=3)
        ax.annotate(arm, (flops, acc * 100), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = sorted((f, a * 100) for f, a, _, on in pts if on)
    if front:
        ax.plot(*zip(*front, strict=True), color="C3", linewidth=1, label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per image (forward)")
    ax.set_ylabel("test accuracy (%, mean over seeds)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
