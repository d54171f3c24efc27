"""The corruption probe's figures: accuracy heatmap, accuracy against severity, and a gallery."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from stresslab.probes.corruption.compute import CorruptionScores, Gallery
from stresslab.report.figures import heatmap_figure, line_figure, plt, show_image


def figures(
    scores: CorruptionScores, gallery: Gallery, class_names: Sequence[str]
) -> dict[str, tuple[Figure, str]]:
    """``{file stem: (figure, caption)}`` in report order."""
    acc, clean = scores.accuracy, scores.clean_accuracy
    sev = list(scores.severities)
    heatmap = heatmap_figure(
        acc,
        list(scores.corruptions),
        [f"s{s}" for s in sev],
        title=f"Accuracy under corruption (clean {clean:.1%})",
        xlabel="severity",
        ylabel="corruption",
        vmin=0.0,
        vmax=1.0,
    )
    severity = line_figure(
        [0, *sev],
        {
            "mean over corruptions": [clean, *acc.mean(axis=0).tolist()],
            "worst corruption": [clean, *acc.min(axis=0).tolist()],
        },
        title="Accuracy versus severity",
        xlabel="severity (0 = clean)",
        ylabel="accuracy",
    )
    return {
        "corruption_heatmap": (heatmap, "Top-1 accuracy per corruption (rows) and severity (columns)."),
        "corruption_severity": (severity, "Mean and worst accuracy over the corruptions at each severity."),
        "corruption_gallery": (
            gallery_figure(gallery, scores.corruptions, scores.severities, class_names),
            "One test image under every corruption (rows) and severity (columns), with the model's "
            "prediction.",
        ),
    }


def gallery_figure(
    gallery: Gallery, corruptions: Sequence[str], severities: Sequence[int], class_names: Sequence[str]
) -> Figure:
    """Rows: corruptions; columns: clean, then each severity; each tile titled with the prediction.

    The tiles go into one mosaic image (one axes), which draws far faster than a grid of
    90 axes.
    """
    rows, ncols = len(corruptions), len(severities) + 1
    image = gallery.image
    c, h, w = image.shape
    pad = max(3, h // 5)
    mosaic = torch.ones(c, rows * (h + pad) - pad, ncols * (w + pad) - pad)
    truth = gallery.label
    fig, ax = plt.subplots(figsize=(1.1 * ncols + 1.2, 1.0 * rows + 0.6))
    for r in range(rows):
        tiles = [image, *gallery.cells[r]]
        preds = [gallery.clean_pred, *gallery.preds[r]]
        for j, (tile, pred) in enumerate(zip(tiles, preds, strict=True)):
            top, left = r * (h + pad), j * (w + pad)
            mosaic[:, top : top + h, left : left + w] = tile
            ax.text(
                left + w / 2,
                top + h + pad * 0.45,
                class_names[pred],
                ha="center",
                va="center",
                fontsize=6,
                color="black" if pred == truth else "red",
            )
    show_image(ax, mosaic)
    ax.set_xticks(
        [j * (w + pad) + w / 2 for j in range(ncols)],
        ["clean", *[f"s{s}" for s in severities]],
        fontsize=7,
    )
    ax.xaxis.tick_top()
    ax.set_yticks([r * (h + pad) + h / 2 for r in range(rows)], list(corruptions), fontsize=7)
    ax.set_title(f"True class: {class_names[truth]}; wrong predictions in red", fontsize=8, pad=18)
    fig.tight_layout()
    return fig
