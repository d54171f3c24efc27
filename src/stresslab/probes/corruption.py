"""The ``corruption`` probe: accuracy and calibration under the 15 common corruptions.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019. The corruptions are generated on the fly (``stresslab.corruptions``),
batch by batch on the probe's device, from generators seeded by the run seed, the
corruption's name and the severity, so a result does not depend on which other corruptions
run. Accuracies are raw (not normalized by a reference model, as the paper's mCE is).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from stresslab.corruptions import CORRUPTIONS, SEVERITIES
from stresslab.data.base import to_float
from stresslab.errors import ConfigError
from stresslab.metrics.calibration import expected_calibration_error
from stresslab.probes.base import (
    Headline,
    Probe,
    ProbeContext,
    ProbeResult,
    Table,
    batched_forward,
    register_probe,
)
from stresslab.report.figures import heatmap_figure, line_figure, plt, show_image
from stresslab.scoped import inference_scope

log = logging.getLogger(__name__)

# Accuracy rising by more than this (a fraction) from a lower to a higher severity is flagged.
RISE_TOLERANCE = 0.05
# Fewer evaluated images than this gets a warning about the per-cell standard error.
FEW_IMAGES = 200


def stratified_subset(labels: Tensor, n: int | None, generator: torch.Generator) -> Tensor:
    """Sorted positions (n,) of a class-stratified random subset of ``labels`` (N,).

    Each class keeps its share of the set (largest remainders get the leftover places);
    ``n`` None, 0 or >= N returns every position.
    """
    total = len(labels)
    if not n or n >= total:
        return torch.arange(total)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n / total
    quota = exact.floor().long()
    leftover = n - int(quota.sum())
    if leftover > 0:
        order = torch.argsort(exact - quota.double(), descending=True, stable=True)
        quota[order[:leftover]] += 1
    picked = []
    for cls, q in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(labels == cls).flatten()
        perm = torch.randperm(len(members), generator=generator)
        picked.append(members[perm[:q]])
    return torch.sort(torch.cat(picked)).values


def corruption_salt(name: str, severity: int) -> int:
    """A stable generator salt per (corruption, severity), independent of the other settings."""
    return zlib.crc32(f"corruption/{name}/{severity}".encode()) & 0x7FFFFFFF


@register_probe("corruption")
class CorruptionProbe(Probe):
    """Accuracy, per-class accuracy and ECE under the CIFAR-10-C corruptions at each severity.

    Settings: ``corruptions`` (names, default all 15), ``severities`` (subset of 1..5,
    default all), ``max_images`` (class-stratified seeded subset of the test set; 0 or None:
    all), ``n_bins`` (equal-width ECE bins, 15).
    """

    order = 60
    headlines = (Headline("mean_corruption_accuracy", "corruption accuracy", percent=True),)

    def __init__(
        self,
        *,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = SEVERITIES,
        max_images: int | None = 1000,
        n_bins: int = 15,
    ) -> None:
        names = list(CORRUPTIONS.names()) if corruptions is None else list(corruptions)
        if not names:
            raise ConfigError("probes.corruption: `corruptions` is empty; leave it out to run all 15")
        for name in names:
            CORRUPTIONS.get(name)  # unknown names raise ConfigError listing the choices
        if len(set(names)) != len(names):
            raise ConfigError(f"probes.corruption: duplicate corruptions in {names}")
        sev = sorted({int(s) for s in severities})
        if not sev or any(s not in SEVERITIES for s in sev):
            raise ConfigError(
                f"probes.corruption: severities must be a non-empty subset of 1..5; got {severities}"
            )
        if max_images is not None and max_images < 0:
            raise ConfigError(f"probes.corruption: max_images must be >= 0 (0: all); got {max_images}")
        if n_bins < 1:
            raise ConfigError(f"probes.corruption: n_bins must be >= 1; got {n_bins}")
        self.corruptions = names
        self.severities = sev
        self.max_images = max_images
        self.n_bins = n_bins

    def run(self, ctx: ProbeContext) -> ProbeResult:
        res = ProbeResult()
        split, info = ctx.split, ctx.info
        subset = stratified_subset(split.test_y, self.max_images, ctx.generator(salt=0xC0))
        images, labels = split.test_x[subset], split.test_y[subset].long()
        n, k = len(labels), info.num_classes
        if n == 0:
            res.warnings.append("The test set is empty; the corruption probe measured nothing.")
            return res

        with inference_scope(ctx.model), torch.no_grad():
            clean_logits = self._clean_logits(ctx, subset, images)
            logits = self._corrupted_logits(ctx, images)
            gallery = self._gallery(ctx, images, labels, clean_logits)

        names, sev = self.corruptions, self.severities
        correct = torch.stack(
            [torch.stack([lg.argmax(1) == labels for lg in row]) for row in logits]
        ).double()
        acc = correct.mean(dim=2).numpy()  # (corruptions, severities)
        clean_correct = (clean_logits.argmax(1) == labels).double()
        clean_acc = float(clean_correct.mean())
        mca = float(acc.mean())
        clean_ece = expected_calibration_error(F.softmax(clean_logits, 1), labels, self.n_bins)
        eces = [
            expected_calibration_error(F.softmax(torch.cat(row), 1), labels.repeat(len(row)), self.n_bins)
            for row in logits
        ]

        m = res.metrics
        m["clean_accuracy"] = clean_acc
        m["mean_corruption_accuracy"] = mca
        m["relative_drop"] = (clean_acc - mca) / clean_acc if clean_acc > 0 else 0.0
        m["clean_ece"] = clean_ece
        m["mean_corruption_ece"] = float(np.mean(eces))
        m["n_images"] = float(n)
        for i, name in enumerate(names):
            m[f"{name}.accuracy"] = float(acc[i].mean())
            m[f"{name}.ece"] = eces[i]
            for j, s in enumerate(sev):
                m[f"{name}.s{s}.accuracy"] = float(acc[i, j])
        if clean_acc == 0:
            res.warnings.append(
                "Clean accuracy is 0 on the evaluated images, so the relative drop is set to 0."
            )

        self._severity_tables(res, acc, eces, clean_acc, clean_ece)
        per_class = self._per_class(res, correct, clean_correct, labels, k, info.class_names)
        self._figures(res, acc, clean_acc, gallery, info.class_names)
        self._summary_and_warnings(res, acc, clean_acc, mca, clean_ece, eces, per_class, n)
        res.data = {
            "corruptions": names,
            "severities": sev,
            "accuracy": acc.tolist(),
            "ece": eces,
            "clean_accuracy": clean_acc,
            "test_index": split.test_index[subset].tolist(),
            "per_class": per_class,
        }
        return res

    # -- evaluation -------------------------------------------------------------------------

    def _clean_logits(self, ctx: ProbeContext, subset: Tensor, images: Tensor) -> Tensor:
        """Clean logits of the subset: reused from the shared predictions when they cover the test set."""
        pred = ctx.predictions
        if pred.logits.ndim == 2 and len(pred.logits) == len(ctx.split.test_y):
            return pred.logits[subset].float()
        return batched_forward(ctx.model, to_float(images), ctx.batch_size, ctx.device)

    def _corrupted_logits(self, ctx: ProbeContext, images: Tensor) -> list[list[Tensor]]:
        """Logits (N, K) per corruption and severity; images corrupted batch by batch on the device."""
        out: list[list[Tensor]] = []
        bs = max(1, ctx.batch_size)
        # ``track`` is typed as an iterator in the contract but returns a context manager.
        tracker: Any = ctx.track("corruptions", len(self.corruptions) * len(self.severities))
        with tracker as advance:
            for name in self.corruptions:
                fn = CORRUPTIONS.get(name)
                row = []
                for s in self.severities:
                    gen = ctx.generator(salt=corruption_salt(name, s))
                    chunks = []
                    for i in range(0, len(images), bs):
                        xb = to_float(images[i : i + bs]).to(ctx.device)
                        chunks.append(ctx.model(fn(xb, s, gen)).float().cpu())
                    row.append(torch.cat(chunks))
                    advance(1)
                out.append(row)
        return out

    def _gallery(
        self, ctx: ProbeContext, images: Tensor, labels: Tensor, clean_logits: Tensor
    ) -> dict[str, Any]:
        """One image (the first correctly classified one, else the first) under every corruption."""
        hits = torch.nonzero(clean_logits.argmax(1) == labels).flatten()
        pos = int(hits[0]) if len(hits) else 0
        x = to_float(images[pos : pos + 1]).to(ctx.device)
        cells, preds = [], []
        for name in self.corruptions:
            fn = CORRUPTIONS.get(name)
            row = [fn(x, s, ctx.generator(salt=corruption_salt(name, s) + 1)) for s in self.severities]
            batch = torch.cat(row)
            preds.append(ctx.model(batch).argmax(1).cpu().tolist())
            cells.append(batch.cpu())
        return {
            "image": x.cpu()[0],
            "label": int(labels[pos]),
            "clean_pred": int(clean_logits[pos].argmax()),
            "cells": cells,
            "preds": preds,
        }

    # -- tables, figures, findings ------------------------------------------------------------

    def _severity_tables(
        self, res: ProbeResult, acc: np.ndarray, eces: list[float], clean_acc: float, clean_ece: float
    ) -> None:
        cols = ["corruption", *[f"s{s}" for s in self.severities], "mean", "drop vs clean", "ECE"]
        rows: list[list[Any]] = [
            [
                "clean",
                *[round(clean_acc, 4)] * len(self.severities),
                round(clean_acc, 4),
                0.0,
                round(clean_ece, 4),
            ]
        ]
        for i, name in enumerate(self.corruptions):
            mean = float(acc[i].mean())
            rows.append(
                [
                    name,
                    *[round(float(v), 4) for v in acc[i]],
                    round(mean, 4),
                    round(clean_acc - mean, 4),
                    round(eces[i], 4),
                ]
            )
        res.tables.append(
            Table(
                "Accuracy per corruption and severity",
                cols,
                rows,
                "Top-1 accuracy on the same test images under each corruption; ECE with "
                f"{self.n_bins} equal-width bins over all severities of a corruption.",
            )
        )

    def _per_class(
        self,
        res: ProbeResult,
        correct: Tensor,
        clean_correct: Tensor,
        labels: Tensor,
        k: int,
        class_names: Sequence[str],
    ) -> list[dict[str, Any]]:
        """Clean vs corrupted accuracy per class (mean over all corruptions and severities)."""
        shifted = correct.mean(dim=(0, 1))  # (N,) share of corrupted versions classified right
        records: list[dict[str, Any]] = []
        for c in range(k):
            mask = labels == c
            count = int(mask.sum())
            if count == 0:
                continue
            clean_c = float(clean_correct[mask].mean())
            shift_c = float(shifted[mask].mean())
            records.append(
                {
                    "class": class_names[c],
                    "n": count,
                    "clean": clean_c,
                    "corrupted": shift_c,
                    "drop": clean_c - shift_c,
                }
            )
            res.metrics[f"class.{c}.corruption_accuracy"] = shift_c
        res.tables.append(
            Table(
                "Accuracy per class, clean vs corrupted",
                ["class", "images", "clean", "corrupted (mean)", "drop"],
                [
                    [r["class"], r["n"], round(r["clean"], 4), round(r["corrupted"], 4), round(r["drop"], 4)]
                    for r in sorted(records, key=lambda r: r["corrupted"])
                ],
                "Corrupted accuracy is the mean over every corruption and severity run; weakest class first.",
            )
        )
        return records

    def _figures(
        self,
        res: ProbeResult,
        acc: np.ndarray,
        clean_acc: float,
        gallery: dict[str, Any],
        class_names: Sequence[str],
    ) -> None:
        res.figures["corruption_heatmap"] = heatmap_figure(
            acc,
            self.corruptions,
            [f"s{s}" for s in self.severities],
            title=f"Accuracy under corruption (clean {clean_acc:.1%})",
            xlabel="severity",
            ylabel="corruption",
            vmin=0.0,
            vmax=1.0,
        )
        res.captions["corruption_heatmap"] = "Top-1 accuracy per corruption (rows) and severity (columns)."
        res.figures["corruption_severity"] = line_figure(
            [0, *self.severities],
            {
                "mean over corruptions": [clean_acc, *acc.mean(axis=0).tolist()],
                "worst corruption": [clean_acc, *acc.min(axis=0).tolist()],
            },
            title="Accuracy versus severity",
            xlabel="severity (0 = clean)",
            ylabel="accuracy",
        )
        res.captions["corruption_severity"] = "Mean and worst accuracy over the corruptions at each severity."
        res.figures["corruption_gallery"] = self._gallery_figure(gallery, class_names)
        res.captions["corruption_gallery"] = (
            "One test image under every corruption (rows) and severity (columns), with the model's "
            "prediction."
        )

    def _gallery_figure(self, gallery: dict[str, Any], class_names: Sequence[str]) -> Figure:
        """Rows: corruptions; columns: clean, then each severity; each tile titled with the prediction.

        The tiles go into one mosaic image (one axes), which draws far faster than a grid of
        90 axes.
        """
        rows, ncols = len(self.corruptions), len(self.severities) + 1
        image = gallery["image"]
        c, h, w = image.shape
        pad = max(3, h // 5)
        mosaic = torch.ones(c, rows * (h + pad) - pad, ncols * (w + pad) - pad)
        truth = gallery["label"]
        fig, ax = plt.subplots(figsize=(1.1 * ncols + 1.2, 1.0 * rows + 0.6))
        for r in range(rows):
            tiles = [image, *gallery["cells"][r]]
            preds = [gallery["clean_pred"], *gallery["preds"][r]]
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
            ["clean", *[f"s{s}" for s in self.severities]],
            fontsize=7,
        )
        ax.xaxis.tick_top()
        ax.set_yticks([r * (h + pad) + h / 2 for r in range(rows)], self.corruptions, fontsize=7)
        ax.set_title(f"True class: {class_names[truth]}; wrong predictions in red", fontsize=8, pad=18)
        fig.tight_layout()
        return fig

    def _summary_and_warnings(
        self,
        res: ProbeResult,
        acc: np.ndarray,
        clean_acc: float,
        mca: float,
        clean_ece: float,
        eces: list[float],
        per_class: list[dict[str, Any]],
        n: int,
    ) -> None:
        names = self.corruptions
        res.summary.append(
            f"Mean corruption accuracy {mca:.1%} against {clean_acc:.1%} clean "
            f"(relative drop {res.metrics['relative_drop']:.1%}) over {len(names)} corruptions x "
            f"{len(self.severities)} severities on {n} test images."
        )
        order = np.argsort(acc.mean(axis=1))
        worst = ", ".join(f"{names[i]} ({acc[i].mean():.1%})" for i in order[:3])
        res.summary.append(f"Worst corruptions: {worst}.")
        if per_class:
            weakest = min(per_class, key=lambda r: r["corrupted"])
            res.summary.append(
                f"Weakest class under shift: {weakest['class']} ({weakest['clean']:.1%} clean, "
                f"{weakest['corrupted']:.1%} corrupted)."
            )
            biggest = max(per_class, key=lambda r: r["drop"])
            if biggest is not weakest:
                res.summary.append(
                    f"Largest class drop: {biggest['class']} "
                    f"({biggest['clean']:.1%} -> {biggest['corrupted']:.1%})."
                )
        res.summary.append(
            f"ECE under corruption averages {float(np.mean(eces)):.3f} against {clean_ece:.3f} clean."
        )
        for i, name in enumerate(names):
            for j in range(len(self.severities)):
                later = acc[i, j + 1 :]
                if later.size and float(later.max()) - float(acc[i, j]) > RISE_TOLERANCE:
                    t = j + 1 + int(later.argmax())
                    res.warnings.append(
                        f"Accuracy under {name} rises with severity, from {acc[i, j]:.1%} at severity "
                        f"{self.severities[j]} to {acc[i, t]:.1%} at severity {self.severities[t]}: the "
                        "corruption may not degrade these images monotonically, or the model exploits it."
                    )
                    break
            if float(acc[i].max()) - clean_acc > RISE_TOLERANCE:
                res.warnings.append(
                    f"Accuracy under {name} ({acc[i].max():.1%}) exceeds clean accuracy ({clean_acc:.1%}) by "
                    f"more than {RISE_TOLERANCE:.0%}: check the clean predictions and the data."
                )
        if n < FEW_IMAGES:
            se = float(np.sqrt(max(mca * (1 - mca), 1e-12) / n))
            res.warnings.append(
                f"Only {n} test images were corrupted: each accuracy cell has a standard error of about "
                f"{se:.1%}."
            )
