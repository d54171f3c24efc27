"""Figures of the explain probe: one row of maps per case, and the faithfulness curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from stresslab.probes.explain.cases import Case
from stresslab.report.figures import overlay_heatmap, show_image


@dataclass(frozen=True)
class MapColumn:
    """One column of the case figure: a title, maps (N, H, W), and whether they are signed."""

    title: str
    maps: Tensor
    diverging: bool = False


def case_rows_figure(
    images: Tensor,
    cases: Sequence[Case],
    columns: Sequence[MapColumn],
    class_names: Sequence[str],
    rows: Sequence[int],
) -> Figure:
    """Rows ``rows`` of the cases: the image titled with index, true/pred class names,
    confidence and entropy, then each column's map over the image."""
    ncols = 1 + len(columns)
    cell = 1.55
    fig, axes = plt.subplots(len(rows), ncols, figsize=(cell * ncols, cell * len(rows) + 0.2), squeeze=False)
    for r, i in enumerate(rows):
        c = cases[i]
        title = (
            f"#{c.index} {c.kind}\ntrue {class_names[c.true]}\npred {class_names[c.pred]}\n"
            f"conf {c.confidence:.2f} H {c.entropy:.2f}"
        )
        show_image(axes[r, 0], images[i], title, fontsize=6)
        for j, col in enumerate(columns, start=1):
            overlay_heatmap(axes[r, j], images[i], col.maps[i], col.title, diverging=col.diverging)
            axes[r, j].title.set_fontsize(6)
    fig.tight_layout()
    return fig


def curves_figure(
    fractions: Sequence[float], deletion: dict[str, Tensor], insertion: dict[str, Tensor]
) -> Figure:
    """Mean deletion and insertion curves (target probability vs fraction of pixels) per method."""
    fig, (ax_d, ax_i) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    x = np.asarray(fractions)
    for ax, curves, title in (
        (ax_d, deletion, "deletion (lower is better)"),
        (ax_i, insertion, "insertion (higher is better)"),
    ):
        for name, c in curves.items():
            style = "--" if name == "random" else "-"
            ax.plot(x, c.mean(dim=0).numpy(), style, label=name)
        ax.set_xlabel("fraction of pixels deleted" if ax is ax_d else "fraction of pixels inserted")
        ax.set_ylabel("probability of predicted class")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    ax_i.legend(fontsize=7)
    fig.tight_layout()
    return fig
