"""More than one test of each method's maps, on the quality sample: ROAD (deletion with noisy
linear imputation, both orders), localisation (attribution mass on the object where the dataset
has a plain background) and robustness (max-sensitivity under small input noise).

ROAD and max-sensitivity cost forward (and, for max-sensitivity, attribution) passes per image,
so they run on a capped, seeded subset of the quality sample (``road_images``,
``sensitivity_images``: the class-stratified ``ctx.sample`` of that size, which a larger sample
contains class by class); localisation is cheap and uses every image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stresslab.attributions.base import Attribution
from stresslab.metrics.localisation import relevance_mass_accuracy, relevance_rank_accuracy
from stresslab.probes.base import ProbeContext
from stresslab.probes.explain.compute import FORWARD_BATCH, Explained
from stresslab.probes.explain.quality import background_mask
from stresslab.probes.explain.road import RoadCurves, road_curves
from stresslab.probes.explain.sensitivity import max_sensitivity
from stresslab.probes.explain.settings import ExplainSettings

SEED_ROAD, SEED_ROAD_RANDOM, SEED_SENSITIVITY = 19, 23, 29


@dataclass(frozen=True)
class Localisation:
    """Per image (N,) float64, NaN where undefined: ``mass``, the share of positive attribution
    on the object (relevance mass accuracy); ``rank``, the share of the K top-ranked pixels on
    the object, K = the object's size (relevance rank accuracy)."""

    mass: Tensor
    rank: Tensor


@dataclass(frozen=True)
class MethodTests:
    """One method's further tests (``None`` where not run): ROAD curves on the ROAD subset,
    localisation on every quality image, max-sensitivity (n,) float64 on its subset."""

    road: RoadCurves | None
    localisation: Localisation | None
    sensitivity: Tensor | None


@dataclass(frozen=True)
class FurtherTests:
    """Every method's :class:`MethodTests`, ROAD of random pixel orders (the reference), the
    object's share of each quality image (N,) (``None`` without a plain background), and
    the sizes of the two subsets."""

    methods: dict[str, MethodTests]
    random_road: RoadCurves | None
    object_area: Tensor | None
    road_images: int
    sensitivity_images: int


def subset(ctx: ProbeContext, explained: Explained, k: int, purpose: str) -> Tensor:
    """Row indices into ``explained``'s cases: all when at most ``k``; else those in the
    seeded stratified ``ctx.sample(k)`` (contained in the quality sample), or ``k`` evenly
    spaced rows when the cases are not that sample (the explained cases)."""
    n = len(explained.cases)
    if k <= 0:
        return torch.zeros(0, dtype=torch.long)
    if n <= k:
        return torch.arange(n)
    wanted = {int(p) for p in ctx.sample(k, purpose)}
    rows = [i for i, c in enumerate(explained.cases) if c.position in wanted]
    if len(rows) == k:
        return torch.tensor(rows, dtype=torch.long)
    return torch.linspace(0, n - 1, k).round().long()


MIN_SENSITIVITY_IMAGES = 8


def sensitivity_cap(n: int, cost: int) -> int:
    """Images for max-sensitivity of a method with ``cost`` passes per map: ``n // cost``, at
    least ``MIN_SENSITIVITY_IMAGES`` (and at most ``n``). SmoothGrad with 20 samples took 32 s
    of CPU on 32 images x 8 draws of the default model, occlusion (121 windows) 77 s, against
    0.9 s for Grad-CAM."""
    return min(n, max(MIN_SENSITIVITY_IMAGES, n // max(1, cost)))


def passes_per_map(method: Attribution, height: int, width: int) -> int:
    """Model passes one map costs: occlusion's window positions (one forward pass each; it
    declares ``cost`` 1 as it batches its own passes), else the method's ``cost``."""
    positions = getattr(method, "positions", None)
    return int(positions(height, width)) if callable(positions) else method.cost


def localisation(maps: Tensor, on_object: Tensor) -> Localisation:
    """Relevance mass accuracy of the positive part of ``maps`` (N, H, W) and relevance rank
    accuracy of ``maps`` on the object mask (N, H, W) bool."""
    return Localisation(
        relevance_mass_accuracy(maps.clamp(min=0), on_object), relevance_rank_accuracy(maps, on_object)
    )


def further_tests(ctx: ProbeContext, quality: Explained, settings: ExplainSettings) -> FurtherTests:
    """ROAD, localisation and max-sensitivity of every method of ``quality`` (its maps explain
    the predicted class), as set by ``settings`` (see the module docstring)."""
    s = settings
    x, pred = quality.images, torch.tensor([c.pred for c in quality.cases], dtype=torch.long)
    road_rows = subset(ctx, quality, s.road_images, "explain_road")
    sens_rows = subset(ctx, quality, s.sensitivity_images, "explain_sensitivity")
    on_object = None
    if ctx.info.background is not None:
        on_object = ~background_mask(x, ctx.info.background, s.background_tolerance)
    fwd = max(ctx.batch_size, FORWARD_BATCH)
    xr, pr = x[road_rows], pred[road_rows]

    def road(maps: Tensor) -> RoadCurves:
        gen = ctx.generator(SEED_ROAD)  # the same imputation noise for every method
        return road_curves(
            ctx.model,
            xr,
            maps,
            pr,
            percentages=s.road_percentages,
            noise=s.road_noise,
            generator=gen,
            batch_size=fwd,
        )

    out: dict[str, MethodTests] = {}
    total = len(quality.methods) + 1
    with ctx.track("explain: ROAD, localisation, sensitivity", total) as advance:
        random_road = None
        if len(road_rows):
            g = ctx.generator(SEED_ROAD_RANDOM)
            random_road = road(torch.rand(xr.shape[0], xr.shape[2], xr.shape[3], generator=g))
        advance(1)
        for name, r in quality.methods.items():
            curves = road(r.maps[road_rows]) if len(road_rows) else None
            sens = None
            if len(sens_rows):
                method = r.method
                rows = sens_rows[
                    : sensitivity_cap(len(sens_rows), passes_per_map(method, x.shape[2], x.shape[3]))
                ]
                sens = max_sensitivity(
                    method,
                    ctx.model,
                    x[rows],
                    pred[rows],
                    r.maps[rows],
                    radius=s.sensitivity_radius,
                    samples=s.sensitivity_samples,
                    generator=ctx.generator(SEED_SENSITIVITY),
                    batch_size=ctx.batch_size if method.gradient_based else fwd,
                )
            loc = localisation(r.maps, on_object) if on_object is not None else None
            out[name] = MethodTests(curves, loc, sens)
            advance(1)
    area = on_object.flatten(1).float().mean(1).double() if on_object is not None else None
    return FurtherTests(out, random_road, area, len(road_rows), len(sens_rows))
