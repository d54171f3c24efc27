"""The explain probe's measurements: each method's maps of the cases and the per-image
numbers its checks rest on (deletion/insertion curves, randomization correlation,
background share), gathered in one typed :class:`Explained` record."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from stresslab.attributions.base import Attribution, fill_value
from stresslab.data.base import to_float
from stresslab.probes.base import ProbeContext
from stresslab.probes.explain.cases import Case
from stresslab.probes.explain.quality import (
    background_mask,
    background_share,
    curve_auc,
    deletion_insertion_curves,
    randomization_test,
)
from stresslab.probes.explain.settings import ExplainSettings

FORWARD_BATCH = 256
"""Smallest batch for forward-only work (curves, occlusion), which is cheap per image."""

SEED_MAPS, SEED_RANDOM_MAPS, SEED_RANDOMIZED_MODEL = 11, 13, 17


@dataclass
class Curves:
    """Deletion and insertion curves (N, S+1): probability of the predicted class as the
    top-ranked pixels are deleted / inserted (see ``deletion_insertion_curves``)."""

    deletion: Tensor
    insertion: Tensor

    @property
    def deletion_auc(self) -> Tensor:
        """(N,) in [0, 1]; lower is better."""
        return curve_auc(self.deletion)

    @property
    def insertion_auc(self) -> Tensor:
        """(N,) in [0, 1]; higher is better."""
        return curve_auc(self.insertion)


@dataclass
class MethodResult:
    """One method on the N cases. ``method`` is the instance fitted to the model and data
    (its ``used_settings()`` are the settings actually used). ``maps`` (N, H, W) explain the
    predicted class; ``true_maps`` the true class (methods with ``has_true_class_variant``);
    ``true_confidence`` (N, H, W) and ``grid`` (N, 2, R, S) are the true class's probability
    with each region hidden and the probability grid for (predicted, true) (methods with
    ``has_confidence_map``). ``spearman`` (N,) float64 is the rank correlation with the
    maps of a randomized model (NaN where a map is constant); ``background_share`` (N,)
    the share of positive attribution on the background (NaN without positive mass;
    ``None`` when the dataset has no plain background)."""

    method: Attribution
    maps: Tensor
    curves: Curves
    spearman: Tensor
    background_share: Tensor | None = None
    true_maps: Tensor | None = None
    true_confidence: Tensor | None = None
    grid: Tensor | None = None


@dataclass
class Explained:
    """Everything measured on the cases: images (N, C, H, W) in [0, 1], each method's
    :class:`MethodResult` (in the configured order), the curves of random pixel orders,
    and the background's share of each image (N,) (``None`` without a background)."""

    cases: list[Case]
    class_names: list[str]
    images: Tensor
    methods: dict[str, MethodResult]
    random: Curves
    background_area: Tensor | None

    @property
    def is_error(self) -> Tensor:
        return torch.tensor([c.is_error for c in self.cases], dtype=torch.bool)

    @property
    def true(self) -> Tensor:
        return torch.tensor([c.true for c in self.cases], dtype=torch.long)


def class_names(ctx: ProbeContext) -> list[str]:
    """The dataset's class names, with the class number where a name is missing."""
    info = ctx.info
    return [info.class_names[i] if i < len(info.class_names) else str(i) for i in range(info.num_classes)]


def prepare_methods(
    ctx: ProbeContext, methods: dict[str, Attribution]
) -> tuple[dict[str, Attribution], list[str]]:
    """Each method fitted to the model and the dataset, and the warnings that raised; a
    method that cannot explain this model (``Attribution.unavailable``, e.g. attention
    rollout on a CNN) is left out, with a warning saying why."""
    fitted: dict[str, Attribution] = {}
    warnings: list[str] = []
    for name, method in methods.items():
        reason = method.unavailable(ctx.model)
        if reason:
            warnings.append(f"{method.label} ({name}) was skipped: {reason}")
            continue
        fitted[name], notes = method.prepare(ctx.model, ctx.info)
        warnings.extend(notes)
    return fitted, warnings


def compute(
    ctx: ProbeContext, cases: list[Case], methods: dict[str, Attribution], settings: ExplainSettings
) -> Explained:
    """Maps of every (prepared) method for ``cases`` and the numbers behind each check."""
    bs = ctx.batch_size
    x = to_float(ctx.split.test_x[torch.tensor([c.position for c in cases])])
    pred = torch.tensor([c.pred for c in cases])
    true = torch.tensor([c.true for c in cases])
    results: dict[str, MethodResult] = {}
    total = 3 * len(methods) + 2

    def batch(method: Attribution) -> int:
        return bs if method.gradient_based else max(bs, FORWARD_BATCH)

    def gen(method: Attribution) -> torch.Generator | None:
        return ctx.generator(SEED_MAPS) if method.stochastic else None

    tracker: Any = ctx.track("explain", total)
    with tracker as advance:
        found: dict[str, dict[str, Tensor]] = {}
        for name, method in methods.items():
            if method.has_confidence_map:
                occ = method.confidence_maps(
                    ctx.model, x, torch.stack([pred, true], 1), batch_size=batch(method)
                )
                found[name] = {
                    "maps": occ.drop[:, 0],
                    "true_confidence": occ.confidence[:, 1],
                    "grid": occ.grid,
                }
            else:
                found[name] = {
                    "maps": method.attribute(ctx.model, x, pred, batch_size=bs, generator=gen(method))
                }
            advance(1)
        for name, method in methods.items():
            if method.has_true_class_variant:
                found[name]["true_maps"] = method.attribute(
                    ctx.model, x, true, batch_size=bs, generator=gen(method)
                )
        advance(1)

        baseline = fill_value(settings.curve_fill, x.shape[1], ctx.info.mean)
        kw = {"steps": settings.curve_steps, "batch_size": max(bs, FORWARD_BATCH)}
        curves: dict[str, Curves] = {}
        for name in methods:
            curves[name] = Curves(
                *deletion_insertion_curves(ctx.model, x, found[name]["maps"], pred, baseline, **kw)
            )
            advance(1)
        g = ctx.generator(SEED_RANDOM_MAPS)
        dels, ins = [], []
        for _ in range(settings.random_maps):
            rand = torch.rand(x.shape[0], x.shape[2], x.shape[3], generator=g)
            d, i = deletion_insertion_curves(ctx.model, x, rand, pred, baseline, **kw)
            dels.append(d)
            ins.append(i)
        random = Curves(torch.stack(dels).mean(0), torch.stack(ins).mean(0))

        for name, method in methods.items():
            sanity = randomization_test(
                method,
                ctx.model,
                x,
                pred,
                found[name]["maps"],
                seed=ctx.seed * 1_000_003 + SEED_RANDOMIZED_MODEL,
                mode=settings.randomization,
                threshold=settings.randomization_threshold,
                batch_size=batch(method),
                generator=gen(method),
            )
            f = found[name]
            results[name] = MethodResult(
                method,
                maps=f["maps"],
                curves=curves[name],
                spearman=sanity.spearman,
                true_maps=f.get("true_maps"),
                true_confidence=f.get("true_confidence"),
                grid=f.get("grid"),
            )
            advance(1)

        area = None
        if ctx.info.background is not None:
            mask = background_mask(x, ctx.info.background, settings.background_tolerance)
            for r in results.values():
                r.background_share = background_share(r.maps, mask)
            area = mask.flatten(1).float().mean(dim=1)
        advance(1)
    return Explained(cases, class_names(ctx), x, results, random, area)


def reordered(explained: Explained, order: list[str]) -> Explained:
    """``explained`` with its methods in ``order`` (e.g. most faithful first, for galleries)."""
    methods = {name: explained.methods[name] for name in order if name in explained.methods}
    methods.update({k: v for k, v in explained.methods.items() if k not in methods})
    return replace(explained, methods=methods)
