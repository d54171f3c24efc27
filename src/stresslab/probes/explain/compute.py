"""The explain probe's measurements: each method's maps of the cases and the per-image
numbers its checks rest on (deletion/insertion curves, randomization correlation,
background share), gathered in one typed :class:`Explained` record. The per-image work runs
in shards of whole batches (``ctx.shards``: here, or as Ray tasks) and gives the same numbers
however the images are split."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution, fill_value
from stresslab.data.base import to_float
from stresslab.probes.base import ProbeContext
from stresslab.probes.explain.cases import Case
from stresslab.probes.explain.quality import (
    background_mask,
    background_share,
    curve_auc,
    deletion_insertion_curves,
    map_agreement,
    randomized_copy,
)
from stresslab.probes.explain.settings import ExplainSettings
from stresslab.shards import Advance, keyed_generator

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


def noise_generator(method: Attribution, seed: int, first_index: int) -> torch.Generator | None:
    """The generator a stochastic ``method`` draws its noise from for one batch of images
    (``None`` for a deterministic one): keyed by the run ``seed`` and the official test
    index of the batch's first image, so a map does not depend on the shard computing it."""
    return keyed_generator(seed, SEED_MAPS, first_index) if method.stochastic else None


@dataclass
class ShardMaps:
    """What :func:`explain_shard` measures on n images. ``methods[name]`` holds ``maps``,
    ``deletion``, ``insertion`` and ``spearman`` (as in :class:`MethodResult` and
    :class:`Curves`), and ``true_maps``, ``true_confidence``, ``grid`` where the method has
    them; ``random`` the ``deletion`` and ``insertion`` curves (n, S+1) of random maps."""

    methods: dict[str, dict[str, Tensor]]
    random: dict[str, Tensor]


def explain_shard(
    model: nn.Module,
    data: dict[str, Tensor],
    advance: Advance,
    *,
    methods: dict[str, Attribution],
    settings: ExplainSettings,
    baseline: Tensor,
    seed: int,
    batch_size: int,
) -> ShardMaps:
    """Maps, curves and randomization correlations of the shard's images (a shard function).

    ``data``: ``x`` (n, C, H, W) uint8 images, ``pred`` and ``true`` (n,) int64 classes,
    ``index`` (n,) their official test indices. ``baseline`` (1, C, 1, 1) in [0, 1] is the
    curves' deleted pixel. The images go in batches of ``batch_size``, each computed on its
    own with noise and random maps from generators keyed by ``seed`` and the index of the
    batch's first image, so the numbers do not depend on how the images are sharded. The
    randomized model of the randomization test is rebuilt from its seed, once per shard.
    """
    images = to_float(data["x"])
    index = data["index"]
    forward = max(batch_size, FORWARD_BATCH)
    kw = {"steps": settings.curve_steps, "batch_size": forward}
    random_model = randomized_copy(
        model, seed * 1_000_003 + SEED_RANDOMIZED_MODEL, mode=settings.randomization
    )
    parts: dict[str, dict[str, list[Tensor]]] = {name: {} for name in methods}
    rand_parts: dict[str, list[Tensor]] = {"deletion": [], "insertion": []}

    def keep(name: str, **values: Tensor) -> None:
        for key, value in values.items():
            parts[name].setdefault(key, []).append(value)

    try:
        for i in range(0, len(images), batch_size):
            x, first = images[i : i + batch_size], int(index[i])
            pred, true = data["pred"][i : i + batch_size], data["true"][i : i + batch_size]
            for name, method in methods.items():
                batch = batch_size if method.gradient_based else forward
                if method.has_confidence_map:
                    occ = method.confidence_maps(model, x, torch.stack([pred, true], 1), batch_size=batch)
                    keep(name, maps=occ.drop[:, 0], true_confidence=occ.confidence[:, 1], grid=occ.grid)
                else:
                    gen = noise_generator(method, seed, first)
                    keep(name, maps=method.attribute(model, x, pred, batch_size=batch_size, generator=gen))
                advance(1)
            for name, method in methods.items():
                if method.has_true_class_variant:
                    gen = noise_generator(method, seed, first)
                    keep(
                        name, true_maps=method.attribute(model, x, true, batch_size=batch_size, generator=gen)
                    )
            advance(1)
            for name in methods:
                d, ins = deletion_insertion_curves(model, x, parts[name]["maps"][-1], pred, baseline, **kw)
                keep(name, deletion=d, insertion=ins)
                advance(1)
            g = keyed_generator(seed, SEED_RANDOM_MAPS, first)
            curves = [
                deletion_insertion_curves(
                    model,
                    x,
                    torch.rand(x.shape[0], x.shape[2], x.shape[3], generator=g),
                    pred,
                    baseline,
                    **kw,
                )
                for _ in range(settings.random_maps)
            ]
            rand_parts["deletion"].append(torch.stack([c[0] for c in curves]).mean(0))
            rand_parts["insertion"].append(torch.stack([c[1] for c in curves]).mean(0))
            advance(1)
            for name, method in methods.items():
                batch = batch_size if method.gradient_based else forward
                gen = noise_generator(method, seed, first)
                rho, _ = map_agreement(method, random_model, x, pred, parts[name]["maps"][-1], batch, gen)
                keep(name, spearman=rho)
                advance(1)
    finally:
        del random_model
    return ShardMaps(
        {name: {k: torch.cat(v) for k, v in found.items()} for name, found in parts.items()},
        {k: torch.cat(v) for k, v in rand_parts.items()},
    )


def compute(
    ctx: ProbeContext, cases: list[Case], methods: dict[str, Attribution], settings: ExplainSettings
) -> Explained:
    """Maps of every (prepared) method for ``cases`` (at least one) and the numbers behind
    each check, in shards of whole batches (``ctx.shards``, see :func:`explain_shard`)."""
    bs = max(1, ctx.batch_size)
    images = ctx.split.test_x[torch.tensor([c.position for c in cases])]
    data = {
        "x": images,
        "pred": torch.tensor([c.pred for c in cases]),
        "true": torch.tensor([c.true for c in cases]),
        "index": torch.tensor([c.index for c in cases]),
    }
    baseline = fill_value(settings.curve_fill, images.shape[1], ctx.info.mean)
    fn = functools.partial(
        explain_shard, methods=methods, settings=settings, baseline=baseline, seed=ctx.seed, batch_size=bs
    )
    per_batch = 3 * len(methods) + 2

    def units(n: int) -> int:
        return per_batch * math.ceil(n / bs)

    # ``track`` is typed as an iterator in the contract but returns a context manager.
    tracker: Any = ctx.track("explain", units(len(cases)) + 1)
    with tracker as advance:
        parts = ctx.shards.map(fn, ctx.model, data, align=bs, advance=advance, units=units)
        results: dict[str, MethodResult] = {}
        for name, method in methods.items():
            f = {k: torch.cat([p.methods[name][k] for p in parts]) for k in parts[0].methods[name]}
            results[name] = MethodResult(
                method,
                maps=f["maps"],
                curves=Curves(f["deletion"], f["insertion"]),
                spearman=f["spearman"],
                true_maps=f.get("true_maps"),
                true_confidence=f.get("true_confidence"),
                grid=f.get("grid"),
            )
        random = Curves(*(torch.cat([p.random[k] for p in parts]) for k in ("deletion", "insertion")))

        x = to_float(images)
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
