"""More than one test of each method's maps, on the quality sample: ROAD (deletion with noisy
linear imputation, both orders), localisation (attribution mass on the object where the dataset
has a plain background) and robustness (max-sensitivity under small input noise).

ROAD and max-sensitivity cost forward (and, for max-sensitivity, attribution) passes per image,
so they run on a capped, seeded subset of the quality sample (``road_images``,
``sensitivity_images``: the class-stratified ``ctx.sample`` of that size, which a larger sample
contains class by class); localisation is cheap and uses every image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution
from stresslab.metrics.localisation import relevance_mass_accuracy, relevance_rank_accuracy
from stresslab.probes.base import ProbeContext
from stresslab.probes.explain.compute import FORWARD_BATCH, Explained
from stresslab.probes.explain.quality import background_mask
from stresslab.probes.explain.road import IMPUTE_PIXELS, RoadCurves, road_curves
from stresslab.probes.explain.sensitivity import max_sensitivity
from stresslab.probes.explain.settings import ExplainSettings
from stresslab.shards import Advance, keyed_generator

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


SENSITIVITY_CHUNK = 8
"""Images explained under noise together in :func:`sensitivity_shard` (8 images x 8 draws:
64 passes, one CPU chunk); the noise of each chunk is keyed by its first image."""


def road_shard(
    model: nn.Module,
    data: dict[str, Tensor],
    advance: Advance,
    *,
    methods: tuple[str, ...],
    settings: ExplainSettings,
    seed: int,
    batch_size: int,
) -> dict[str, RoadCurves]:
    """ROAD curves of every method in ``methods`` and of random pixel orders (key
    ``"random"``) on the shard's images (a shard function). ``data``: ``x`` (n, C, H, W) in
    [0, 1], ``pred`` (n,), ``index`` (n,) official test indices and ``maps.<method>``
    (n, H, W). Chunks of :data:`~stresslab.probes.explain.road.IMPUTE_PIXELS` pixels are
    computed on their own; the imputation noise of a chunk (the same for every method) and its
    random orders come from generators keyed by ``seed`` and the chunk's first index, so the
    curves do not depend on the split."""
    x, pred, index = data["x"], data["pred"], data["index"]
    n, _, h, w = x.shape
    chunk = road_chunk(h, w)
    parts: dict[str, list[RoadCurves]] = {name: [] for name in ("random", *methods)}
    for start in range(0, n, chunk):
        sl, first = slice(start, start + chunk), int(index[start])
        xs, ps = x[sl], pred[sl]
        random = torch.rand(xs.shape[0], h, w, generator=keyed_generator(seed, SEED_ROAD_RANDOM, first))
        orders = {"random": random}
        orders.update({name: data[f"maps.{name}"][sl] for name in methods})
        for name, maps in orders.items():
            parts[name].append(
                road_curves(
                    model,
                    xs,
                    maps,
                    ps,
                    percentages=settings.road_percentages,
                    noise=settings.road_noise,
                    generator=keyed_generator(seed, SEED_ROAD, first),
                    batch_size=batch_size,
                )
            )
        advance(len(xs))
    return {name: _joined(curves) for name, curves in parts.items()}


def _joined(parts: list[RoadCurves]) -> RoadCurves:
    return RoadCurves(
        parts[0].percentages, torch.cat([c.morf for c in parts]), torch.cat([c.lerf for c in parts])
    )


def road_chunk(height: int, width: int) -> int:
    """Images per ROAD chunk: :data:`~stresslab.probes.explain.road.IMPUTE_PIXELS` of pixels."""
    return max(1, IMPUTE_PIXELS // max(1, height * width))


def sensitivity_shard(
    model: nn.Module,
    data: dict[str, Tensor],
    advance: Advance,
    *,
    method: Attribution,
    settings: ExplainSettings,
    seed: int,
    batch_size: int,
) -> Tensor:
    """Max-sensitivity (n,) float64 of ``method``'s maps ``data["maps"]`` (n, H, W) of the
    shard's images ``data["x"]`` for classes ``data["pred"]`` (a shard function), in chunks of
    :data:`SENSITIVITY_CHUNK` images whose noise comes from a generator keyed by ``seed`` and
    the chunk's first official index ``data["index"]``."""
    x, pred, maps, index = data["x"], data["pred"], data["maps"], data["index"]
    out = []
    for start in range(0, len(x), SENSITIVITY_CHUNK):
        sl = slice(start, start + SENSITIVITY_CHUNK)
        out.append(
            max_sensitivity(
                method,
                model,
                x[sl],
                pred[sl],
                maps[sl],
                radius=settings.sensitivity_radius,
                samples=settings.sensitivity_samples,
                generator=keyed_generator(seed, SEED_SENSITIVITY, int(index[start])),
                batch_size=batch_size,
            )
        )
        advance(len(out[-1]))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def further_tests(ctx: ProbeContext, quality: Explained, settings: ExplainSettings) -> FurtherTests:
    """ROAD, localisation and max-sensitivity of every method of ``quality`` (its maps explain
    the predicted class), as set by ``settings`` (see the module docstring). ROAD and
    max-sensitivity run in ``ctx.shards`` (here or as Ray tasks; :func:`road_shard`,
    :func:`sensitivity_shard`), with the same numbers whatever the split."""
    s = settings
    x, pred = quality.images, torch.tensor([c.pred for c in quality.cases], dtype=torch.long)
    index = torch.tensor([c.index for c in quality.cases], dtype=torch.long)
    road_rows = subset(ctx, quality, s.road_images, "explain_road")
    sens_rows = subset(ctx, quality, s.sensitivity_images, "explain_sensitivity")
    on_object = None
    if ctx.info.background is not None:
        on_object = ~background_mask(x, ctx.info.background, s.background_tolerance)
    fwd = max(ctx.batch_size, FORWARD_BATCH)
    out: dict[str, MethodTests] = {}
    total = len(quality.methods) + 1
    with ctx.track("explain: ROAD, localisation, sensitivity", total) as advance:
        road: dict[str, RoadCurves] = {}
        if len(road_rows):
            data = {"x": x[road_rows], "pred": pred[road_rows], "index": index[road_rows]}
            data.update({f"maps.{name}": r.maps[road_rows] for name, r in quality.methods.items()})
            fn = functools.partial(
                road_shard, methods=tuple(quality.methods), settings=s, seed=ctx.seed, batch_size=fwd
            )
            parts = ctx.shards.map(fn, ctx.model, data, align=road_chunk(x.shape[2], x.shape[3]))
            road = {name: _joined([p[name] for p in parts]) for name in parts[0]}
        advance(1)
        for name, r in quality.methods.items():
            sens = None
            if len(sens_rows):
                method = r.method
                rows = sens_rows[
                    : sensitivity_cap(len(sens_rows), passes_per_map(method, x.shape[2], x.shape[3]))
                ]
                fn_s = functools.partial(
                    sensitivity_shard,
                    method=method,
                    settings=s,
                    seed=ctx.seed,
                    batch_size=ctx.batch_size if method.gradient_based else fwd,
                )
                data_s = {"x": x[rows], "pred": pred[rows], "maps": r.maps[rows], "index": index[rows]}
                sens = torch.cat(ctx.shards.map(fn_s, ctx.model, data_s, align=SENSITIVITY_CHUNK))
            loc = localisation(r.maps, on_object) if on_object is not None else None
            out[name] = MethodTests(road.get(name), loc, sens)
            advance(1)
    area = on_object.flatten(1).float().mean(1).double() if on_object is not None else None
    return FurtherTests(out, road.get("random"), area, len(road_rows), len(sens_rows))
