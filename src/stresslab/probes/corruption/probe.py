"""The ``corruption`` probe: settings, and the run that ties compute, tables, figures and summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from stresslab.corruptions import CORRUPTIONS, SEVERITIES
from stresslab.errors import ConfigError
from stresslab.metrics.flips import first_change
from stresslab.probes.base import Headline, Probe, ProbeContext, ProbeResult, register_probe
from stresslab.probes.corruption import compute, resolution, resolution_present, summary
from stresslab.probes.corruption.compute import defined
from stresslab.probes.corruption.figures import figures
from stresslab.probes.corruption.tables import cell, class_table, severity_table
from stresslab.scoped import inference_scope


@register_probe("corruption")
class CorruptionProbe(Probe):
    """Accuracy, per-class accuracy and ECE under the CIFAR-10-C corruptions at each severity.

    Settings: ``corruptions`` (names, default all 15), ``severities`` (subset of 1..5,
    default all), ``max_images`` (the run's shared class-stratified sample of the test set,
    ``ctx.sample``; 0 or None: all), ``n_bins`` (equal-width ECE bins, 15).
    ``resolution`` (factors, default 2, 3, 4; empty or None: off): the same images
    downsampled by each factor and upsampled back, with accuracy per class and the clean
    top confused pairs followed across factors (``resolution`` and ``resolution_present``).
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
        resolution: Sequence[int] | None = (2, 3, 4),
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
        factors = list(resolution or [])
        if any(isinstance(f, bool) or not isinstance(f, int) or f < 2 for f in factors):
            raise ConfigError(
                f"probes.corruption: resolution factors must be integers >= 2 (empty: off); got {resolution}"
            )
        self.resolution = sorted(set(factors))
        self.corruptions = names
        self.severities = sev
        self.max_images = max_images
        self.n_bins = n_bins

    def run(self, ctx: ProbeContext) -> ProbeResult:
        res = ProbeResult()
        subset = ctx.sample(self.max_images, "corruption")
        images, labels = ctx.split.test_x[subset], ctx.split.test_y[subset].long()
        if len(labels) == 0:
            res.warnings.append("The test set is empty; the corruption probe measured nothing.")
            return res

        grid = compute.CorruptionGrid(tuple(self.corruptions), tuple(self.severities), self.n_bins)
        with inference_scope(ctx.model), torch.no_grad():
            clean = compute.clean_logits(ctx, subset, images)
            corrupted = compute.corrupted_logits(ctx, images, ctx.split.test_index[subset], grid)
            gallery = compute.gallery(ctx, images, labels, clean, grid)
        test_index = ctx.split.test_index[subset].tolist()
        scores = compute.score(compute.SampleLogits(labels, test_index, clean, corrupted), grid)
        shifts = compute.class_shifts(scores, ctx.info.class_names)

        res.metrics = summary.metrics(scores, shifts)
        res.tables = [severity_table(scores), class_table(shifts)]
        for stem, (fig, caption) in figures(scores, gallery, ctx.info.class_names).items():
            res.figures[stem] = fig
            res.captions[stem] = caption
        res.summary = summary.summary(scores, shifts)
        res.warnings = summary.warnings(scores)
        if self.resolution:
            self._resolution(ctx, res, images, labels, clean)
        res.data.update(
            {
                "corruptions": self.corruptions,
                "severities": self.severities,
                "accuracy": [[defined(float(v)) for v in row] for row in scores.accuracy],
                "ece": [defined(e) for e in scores.ece],
                "clean_accuracy": defined(scores.clean_accuracy),
                "test_index": test_index,
                **self._flips(clean, corrupted),
                "per_class": [
                    {"class": s.name, "n": s.n, "clean": s.clean, "corrupted": s.corrupted, "drop": s.drop}
                    for s in shifts
                ],
            }
        )
        return res

    def _flips(self, clean: torch.Tensor, corrupted: list[list[torch.Tensor]]) -> dict[str, list[Any]]:
        """Per sampled image (``test_index`` order): the smallest severity at which some
        corruption changes its prediction (``flip_severity``, None: none did) and which
        corruption did (``flip_corruption``, the first in the configured order)."""
        steps = [
            (float(s), name, corrupted[c][j].argmax(1))
            for c, name in enumerate(self.corruptions)
            for j, s in enumerate(self.severities)
        ]
        severity, name = first_change(clean.argmax(1), steps)
        return {
            "flip_severity": [None if v is None else int(v) for v in severity],
            "flip_corruption": name,
        }

    def _resolution(
        self,
        ctx: ProbeContext,
        res: ProbeResult,
        images: torch.Tensor,
        labels: torch.Tensor,
        clean: torch.Tensor,
    ) -> None:
        """The sample at each resolution factor, scored and written into ``res``."""
        with inference_scope(ctx.model), torch.no_grad():
            preds = resolution.predictions(ctx, images, self.resolution)
        clean_pred = torch.where(torch.isfinite(clean).all(1), clean.argmax(1), -1)
        scores = resolution.score(labels, clean_pred, preds, self.resolution, ctx.info.class_names)
        res.metrics.update(resolution_present.metrics(scores))
        res.tables.extend(resolution_present.tables(scores))
        res.figures["resolution"] = resolution_present.figure(scores)
        res.captions["resolution"] = (
            "Accuracy and the clean top confused pairs as the test images are downsampled "
            f"{', '.join(f'x{f}' for f in self.resolution)} (area averaging) and upsampled back (bilinear)."
        )
        res.summary.extend(resolution_present.summary(scores))
        res.data["resolution"] = {
            "factors": self.resolution,
            "accuracy": [cell(float(a)) for a in scores.accuracy],
            "predictions": scores.preds.tolist(),
            "pairs": [
                {"true": p.true, "pred": p.pred, "clean": p.clean, "shares": list(p.shares)}
                for p in scores.pairs
            ],
        }
