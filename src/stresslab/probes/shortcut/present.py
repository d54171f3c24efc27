"""Figures, table rows and sentences of the shortcut probe."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from stresslab.probes.shortcut.regions import Box
from stresslab.report.figures import grid, overlay_heatmap, show_image


def _rect(ax: plt.Axes, box: Box) -> None:
    ax.add_patch(
        Rectangle(
            (box.left - 0.5, box.top - 0.5), box.width, box.height, fill=False, edgecolor="lime", lw=1.5
        )
    )


def class_maps_figure(
    images: Sequence[Tensor],
    maps: Sequence[Tensor],
    boxes: Sequence[Box],
    titles: Sequence[str],
    suptitle: str,
) -> Figure:
    """One cell per class: its mean image (C, H, W) under its mean attribution map (H, W),
    with the tested box outlined."""
    fig, axes = grid(max(1, len(images)), ncols=5, cell=1.9)
    for ax, img, m, box, title in zip(axes, images, maps, boxes, titles, strict=False):
        overlay_heatmap(ax, img, m, title)
        ax.title.set_fontsize(6)
        _rect(ax, box)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def evidence_figure(
    donor: Tensor | None,
    box: Box | None,
    befores: Tensor,
    afters: Tensor,
    titles_before: Sequence[str],
    titles_after: Sequence[str],
    suptitle: str,
) -> Figure:
    """The donor with its box (if any), then pairs of recipient images before and after the paste."""
    n = len(befores)
    cols = 1 + 2 * n if donor is not None else 2 * n
    fig, axes = plt.subplots(1, max(cols, 1), figsize=(1.6 * max(cols, 1), 2.1), squeeze=False)
    flat = axes[0]
    j = 0
    if donor is not None:
        show_image(flat[0], donor, "donor", fontsize=6)
        if box is not None:
            _rect(flat[0], box)
        j = 1
    for i in range(n):
        show_image(flat[j], befores[i], titles_before[i], fontsize=6)
        show_image(flat[j + 1], afters[i], titles_after[i], fontsize=6)
        if box is not None:
            _rect(flat[j + 1], box)
        j += 2
    if cols == 0:
        flat[0].axis("off")
    fig.suptitle(suptitle, fontsize=8)
    fig.tight_layout()
    return fig


def pct(v: float) -> str:
    return f"{100 * v:.0f}%" if math.isfinite(v) else "n/a"


def flip_sentence(rec: dict[str, Any]) -> str:
    """'pasting ... turns 63% (95% CI 58-68%) into X vs 2% for the control, p = 1e-40'."""
    f, c = rec["flip"], rec["control"]
    return (
        f"turns {pct(f.get('rate', math.nan))} of correctly classified images of other classes into "
        f"{rec['class_name']} (95% CI {pct(f.get('ci_low', math.nan))}-{pct(f.get('ci_high', math.nan))}, "
        f"n = {f['n']}) against {pct(c.get('rate', math.nan))} for the control (one-sided Fisher p = "
        f"{rec['p_value']:.1e})"
    )


def region_row(rec: dict[str, Any]) -> list[Any]:
    """One row of the regions table."""
    f, c = rec["flip"], rec["control"]
    kind = rec.get("kind", {})
    return [
        rec["class_name"],
        rec["source"],
        rec["box_text"],
        rec["share"],
        rec["consistency"],
        kind.get("kind", ""),
        kind.get("pattern_share"),
        kind.get("background_share"),
        f.get("rate"),
        c.get("rate"),
        rec.get("ratio"),
        rec["p_value"],
        "yes" if rec["shortcut"] else "no",
    ]


REGION_COLUMNS = [
    "class",
    "images",
    "box",
    "share of attribution",
    "consistency",
    "kind",
    "pattern share",
    "background share",
    "flip rate",
    "control flip rate",
    "ratio",
    "p (Fisher)",
    "shortcut",
]
