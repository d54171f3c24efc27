"""The ``ood`` probe's report parts: tables, the risk-coverage view, histograms, the gallery."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from stresslab.data.base import to_float
from stresslab.metrics.selective import aurc, risk_coverage
from stresslab.probes.base import ProbeContext, ProbeResult, Table
from stresslab.probes.predictions import Predictions
from stresslab.report.figures import image_gallery, line_figure

_KEYS = ("auroc", "aupr_in", "aupr_out", "fpr95")


def tables(
    res: ProbeResult,
    rows: dict[str, dict[str, dict[str, float]]],
    failure: dict[str, float],
    names: list[str],
) -> None:
    """One table of every set x score, one of failure detection per score."""
    body = [[set_name, s, *[m[s][k] for k in _KEYS]] for set_name, m in rows.items() for s in names]
    if body:
        res.tables.append(
            Table(
                "Out-of-distribution detection per set and score",
                ["set", "score", "AUROC", "AUPR-in", "AUPR-out", "FPR@95%TPR"],
                body,
                caption="In-distribution: every test image. AUROC 0.5 is chance; FPR@95%TPR is the share "
                "of the set accepted as in-distribution when 95% of the test images are (lower is better).",
            )
        )
    if failure:
        res.tables.append(
            Table(
                "Failure detection: how well each score separates the model's errors from its right answers",
                ["score", "AUROC (errors vs correct)"],
                [[s, v] for s, v in sorted(failure.items(), key=lambda kv: -kv[1])],
            )
        )


def failure_section(
    res: ProbeResult, scores: dict[str, Tensor], correct: Tensor, best: str, failure: dict[str, float]
) -> None:
    """Risk-coverage of the best failure score beside MSP's, with their AURC."""
    if best not in scores or best not in failure or not len(correct):
        return
    series: dict[str, list[float]] = {}
    cov: np.ndarray = np.zeros(0)
    for s in dict.fromkeys((best, "msp")):
        cov, risk = risk_coverage(-scores[s], correct)
        res.metrics[f"aurc.{s}"] = aurc(-scores[s], correct)
        series[f"{s} (AURC {res.metrics[f'aurc.{s}']:.4f})"] = risk.tolist()
    step = max(1, len(cov) // 200)
    res.figures["risk_coverage"] = line_figure(
        cov[::step].tolist(),
        {k: v[::step] for k, v in series.items()},
        title="Risk-coverage: answer only the images each score finds most in-distribution",
        xlabel="coverage",
        ylabel="error rate",
        marker="",
    )
    res.captions["risk_coverage"] = "Lower is better; the calibration probe draws the same view for MSP."
    res.summary.append(
        f"The score that best flags this model's errors is {best} (AUROC {failure[best]:.3f} for errors vs "
        f"right answers; MSP {failure.get('msp', math.nan):.3f})."
    )


def histograms(
    res: ProbeResult, test: dict[str, Tensor], sets: dict[str, dict[str, Tensor]], names: list[str]
) -> None:
    """A grid of histograms, one row per score in ``names`` (the probe draws the best OOD
    score and MSP), one column per set: test images vs the set."""
    if not sets:
        return
    cols = list(sets)
    fig, axes = plt.subplots(
        len(names), len(cols), figsize=(1.9 * len(cols) + 0.6, 1.5 * len(names) + 0.6), squeeze=False
    )
    for i, s in enumerate(names):
        for j, set_name in enumerate(cols):
            ax = axes[i, j]
            a, b = test[s].numpy(), sets[set_name][s].numpy()
            lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
            bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
            ax.hist(a, bins=bins, alpha=0.55, density=True, label="test")
            ax.hist(b, bins=bins, alpha=0.55, density=True, label=set_name)
            ax.set_yticks([])
            ax.tick_params(labelsize=5)
            if i == 0:
                ax.set_title(set_name, fontsize=7)
            if j == 0:
                ax.set_ylabel(s, fontsize=7)
    axes[0, 0].legend(["test", "set"], fontsize=5)
    fig.tight_layout()
    res.figures["score_histograms"] = fig
    res.captions["score_histograms"] = (
        "Scores of the test images (blue) and of each set (orange); higher = more out of distribution."
    )


def reference_note(res: ProbeResult, reference_index: Tensor, n_scored: int, seed: int) -> None:
    """Say (summary and ``data["reference"]``) that the feature scores were fitted on the test
    images at official indices ``reference_index`` and the rest, ``n_scored``, were scored."""
    res.summary.append(
        f"No training images: the Mahalanobis and kNN reference was fitted on {len(reference_index)} "
        f"test images (a seeded, class-stratified half), and every score here is reported on the other "
        f"{n_scored} test images and on outlier sets made from those only, so no image is both "
        "reference and scored."
    )
    res.data["reference"] = {
        "source": "test",
        "seed": seed,
        "n": len(reference_index),
        "index": [int(i) for i in reference_index.tolist()],
    }


def gallery(
    res: ProbeResult,
    ctx: ProbeContext,
    p: Predictions,
    positions: Tensor,
    score: Tensor,
    name: str,
    size: int,
) -> None:
    """The test images the score finds most out of distribution, with prediction and confidence;
    ``p`` are the predictions scored (``score`` (M,) aligned with them) and ``positions`` (M,)
    their positions in the test set."""
    if size <= 0 or not len(score):
        return
    top = torch.argsort(score, descending=True, stable=True)[:size]
    labels = list(ctx.info.class_names)
    titles = [
        f"#{int(p.index[i])} {labels[int(p.labels[i])][:9]}\n"
        f"→ {labels[int(p.preds[i])][:9]} {float(p.confidence[i]):.2f}"
        for i in top.tolist()
    ]
    res.figures["most_out_of_distribution"] = image_gallery(
        to_float(ctx.split.test_x[positions[top]]),
        titles,
        ncols=8,
        suptitle=f"Test images most out of distribution by {name}",
    )
    errors = int((~p.correct[top]).sum())
    res.metrics["errors_among_most_ood"] = errors
    res.captions["most_out_of_distribution"] = (
        f"The {len(top)} test images with the highest {name} score: true label, → prediction and confidence; "
        f"{errors} of them are errors (test error rate {float((~p.correct).float().mean()):.1%})."
    )
    res.data["most_out_of_distribution"] = [
        {"index": int(p.index[i]), "score": float(score[i]), "correct": bool(p.correct[i])}
        for i in top.tolist()
    ]
