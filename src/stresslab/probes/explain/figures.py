"""Figures of the explain probe: one row of maps per case, and the faithfulness curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from stresslab.probes.base import ProbeResult
from stresslab.probes.explain.cases import Case
from stresslab.probes.explain.checks import Checks
from stresslab.probes.explain.compute import Explained
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


def map_columns(explained: Explained, checks: Checks) -> list[MapColumn]:
    """The case figure's columns, by each method's capabilities: the predicted class's
    map; the true class's map too where the method has one; a drop map and the true
    class's confidence where the method hides regions. Methods that fail the sanity check
    are marked in their titles."""
    columns: list[MapColumn] = []
    for name, r in explained.methods.items():
        m = r.method
        mark = "" if checks.methods[name].sanity.passed else "\n(fails sanity check)"
        if r.true_confidence is not None:
            columns.append(MapColumn(f"{m.label} drop (pred){mark}", r.maps, diverging=True))
            columns.append(MapColumn(f"{m.label}: true-class\nconfidence", r.true_confidence))
        elif r.true_maps is not None:
            columns.append(MapColumn(f"{m.label} (pred){mark}", r.maps, diverging=m.signed))
            columns.append(MapColumn(f"{m.label} (true){mark}", r.true_maps, diverging=m.signed))
        else:
            columns.append(MapColumn(f"{m.label} (pred){mark}", r.maps, diverging=m.signed))
    return columns


def explain_figures(res: ProbeResult, explained: Explained, checks: Checks, cases_per_figure: int) -> None:
    """Case figures (``cases_01``, ...; ``cases_per_figure`` rows each) and the mean
    deletion/insertion curves, with captions, into ``res``."""
    columns = map_columns(explained, checks)
    n = len(explained.cases)
    # The caption describes the columns these methods give, no others.
    notes = []
    both = [r.method.label for r in explained.methods.values() if r.true_maps is not None]
    if both:
        notes.append(f"{', '.join(both)} for the predicted and the true class ('why X and not Y')")
    for r in explained.methods.values():
        if r.true_confidence is not None:
            notes.append(
                f"{r.method.label} drop in blue-white-red (red: covering it lowers the predicted class), "
                "and the true class's probability with the patch at each place"
            )
    column_notes = "; " + "; ".join(notes) if notes else ""
    for part, start in enumerate(range(0, n, cases_per_figure), start=1):
        rows = list(range(start, min(start + cases_per_figure, n)))
        stem = f"cases_{part:02d}"
        res.figures[stem] = case_rows_figure(
            explained.images, explained.cases, columns, explained.class_names, rows
        )
        res.captions[stem] = (
            f"Cases {rows[0] + 1}-{rows[-1] + 1} of {n}: image (test index, kind, true and predicted "
            "class, confidence, entropy H in nats) and each method's map" + column_notes + "."
        )
    steps = explained.random.deletion.shape[1] - 1
    fractions = [k / steps for k in range(steps + 1)]
    deletion = {r.method.label: r.curves.deletion for r in explained.methods.values()}
    insertion = {r.method.label: r.curves.insertion for r in explained.methods.values()}
    deletion["random"] = explained.random.deletion
    insertion["random"] = explained.random.insertion
    res.figures["deletion_insertion"] = curves_figure(fractions, deletion, insertion)
    res.captions["deletion_insertion"] = (
        "Mean deletion and insertion curves over all cases (Petsiuk et al., 2018); "
        "dashed: random pixel order."
    )
