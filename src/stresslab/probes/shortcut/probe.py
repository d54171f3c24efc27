"""The ``shortcut`` probe: what does the model rely on outside the object? Find the region
that carries a class's evidence, say what it holds, and test it by transplanting it.

This file holds the probe's settings and the order of its steps; each step is a short method
calling its own module (``find``, ``pattern``, ``regions``, ``transplant``, ``report``), which
is why it runs past 400 lines rather than splitting one sequence across files."""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import torch
from torch import Tensor

from stresslab.attributions.base import ATTRIBUTIONS, Attribution
from stresslab.data.base import to_float
from stresslab.errors import ConfigError
from stresslab.models.base import default_cam_layer
from stresslab.models.layers import choose_cam_layer
from stresslab.probes.base import Headline, Probe, ProbeContext, ProbeResult, register_probe
from stresslab.probes.shortcut import images as imgs
from stresslab.probes.shortcut.find import Found, class_regions, layer_resolution, maps_shard, search
from stresslab.probes.shortcut.pattern import PATTERN, RegionKind, describe_region, pattern_core, sharper
from stresslab.probes.shortcut.regions import Box
from stresslab.probes.shortcut.report import report
from stresslab.probes.shortcut.transplant import background_test, transplant_test

log = logging.getLogger(__name__)


def refine_window(side: int) -> int:
    """Default refining occlusion window (pixels) on images whose shorter side is ``side``
    pixels: 1/7 of it, at least 4 (4 up to 31 px, 32 on 224)."""
    return max(4, round(side / 7))


def refine_stride(side: int) -> int:
    """Default refining occlusion stride (pixels): 1/14 of ``side``, at least 2 (2 up to
    34 px, 16 on 224), so the window positions per image stop growing with the image."""
    return max(2, round(side / 14))


def _declared_layer(model: Any) -> str:
    try:
        return str(getattr(model, "cam_layer", "") or "")
    except ConfigError:  # a hub model whose layer search found none
        return ""


@register_probe("shortcut")
class ShortcutProbe(Probe):
    """Per class, the mean attribution (``method``: gradcam, occlusion, or ``auto``: the
    explain probe's most faithful of the two, see :meth:`_auto`) of correctly
    classified images of each of ``sources`` (test: a shared sample of ``max_images``;
    train: a seeded sample of as many), and the box around its top ``top_fraction`` of
    pixels (at most ``max_region_fraction`` of the image), then up to ``max_regions`` in all,
    each the top of what the earlier ones leave (see :func:`regions_of`); a Grad-CAM box, as
    coarse as its layer, is refined by occlusion (``occlusion_window``, ``occlusion_stride``:
    pixels, by default :func:`refine_window` and :func:`refine_stride`: 4 and 2 up to about
    30 px, then 1/7 and 1/14 of the shorter side, so the window positions per image stop
    growing with the image; ``occlusion_fill``) of ``refine_images`` of the class's images
    near it, and the other regions come from those occlusion maps anywhere in the image (0: not refined; see
    :func:`search`). Each box is described across the class's training images (constant
    pattern, background or object; see :func:`describe_region`); the strongest of each
    class and the others that hold a constant pattern are transplanted: pasted
    from class-A images onto up to ``n_transplant`` correctly classified test images of other
    classes, against a same-size box from a random place of the same images pasted at the
    same place. A constant pattern that flips predictions to A significantly more often than the control
    (one-sided Fisher exact test at ``alpha``, Bonferroni-corrected over every test; a rate
    of at least ``min_flip_rate`` and ``min_ratio`` times the control's) is a shortcut.
    Where images have no plain background, each class's mean image is also painted over
    its low-attribution pixels (below the ``background_quantile`` of its mean map) against
    the mean image of all classes: background reliance.
    """

    order = 35
    headlines = (Headline("n_shortcuts", "shortcuts found"),)

    def __init__(
        self,
        *,
        method: str = "auto",
        layer: str = "",
        occlusion_window: int | None = None,
        occlusion_stride: int | None = None,
        occlusion_fill: str | float = "gray",
        refine_images: int = 16,
        sources: list[str] | tuple[str, ...] = ("test", "train"),
        max_images: int = 1000,
        top_fraction: float = 0.03,
        max_region_fraction: float = 0.2,
        n_transplant: int = 300,
        alpha: float = 0.01,
        min_ratio: float = 2.0,
        min_flip_rate: float = 0.05,
        match_tolerance: float = 0.1,
        min_pattern_share: float = 0.5,
        pattern_ratio: float = 2.0,
        background_tolerance: float = 0.05,
        background_quantile: float = 0.5,
        min_images: int = 5,
        n_examples: int = 4,
        max_kind_images: int = 2000,
        max_regions: int = 3,
    ) -> None:
        if method not in ("auto", "gradcam", "occlusion"):
            raise ValueError(f"method must be auto, gradcam or occlusion; got {method!r}")
        if not sources or any(s not in ("test", "train") for s in sources):
            raise ValueError(f"sources must name some of test, train; got {sources!r}")
        if not 0.0 < top_fraction <= max_region_fraction <= 1.0:
            raise ValueError("need 0 < top_fraction <= max_region_fraction <= 1")
        if not 0.0 < alpha < 1.0 or min_ratio < 1.0 or not 0.0 <= min_flip_rate <= 1.0:
            raise ValueError("need 0 < alpha < 1, min_ratio >= 1 and min_flip_rate in [0, 1]")
        if not 0.0 < background_quantile < 1.0 or n_transplant < 1 or min_images < 1:
            raise ValueError("need 0 < background_quantile < 1, n_transplant >= 1 and min_images >= 1")
        if max_regions < 1:
            raise ValueError(f"max_regions must be at least 1; got {max_regions}")
        self.max_regions = max_regions
        self.method, self.layer = method, layer
        self.occlusion = (occlusion_window, occlusion_stride, occlusion_fill)
        self.refine_images = refine_images
        self.sources = tuple(dict.fromkeys(sources))
        self.max_images, self.n_transplant, self.min_images = max_images, n_transplant, min_images
        self.top_fraction, self.max_region_fraction = top_fraction, max_region_fraction
        self.alpha, self.min_ratio, self.min_flip_rate = alpha, min_ratio, min_flip_rate
        self.kind_settings = {
            "match_tolerance": match_tolerance,
            "min_pattern_share": min_pattern_share,
            "pattern_ratio": pattern_ratio,
            "background_tolerance": background_tolerance,
        }
        self.background_quantile = background_quantile
        self.n_examples, self.max_kind_images = n_examples, max_kind_images

    def _auto(self, ctx: ProbeContext, notes: list[str]) -> tuple[str, str]:
        """(method, layer) for ``method="auto"``: Grad-CAM when the explain probe of this run
        ranked a CAM method most faithful (on the layer it used), occlusion when it ranked
        another method first or none beat random; without the explain probe, Grad-CAM on
        the layer that gives non-constant maps on 95% of 128 sample images, else occlusion."""
        explain = ctx.results.get("explain")
        ranking = explain.data.get("ranking") if explain is not None else None
        if explain is not None and isinstance(ranking, list):
            faithful = [n for n in ranking if explain.metrics.get(f"{n}.faithful") == 1.0]
            used = explain.data.get("settings", {}).get("method_settings", {})
            if faithful and faithful[0] in ("gradcam", "gradcam_plus_plus"):
                notes.append(
                    f"regions from Grad-CAM, the explain probe's most faithful method ({faithful[0]})"
                )
                return "gradcam", str(used.get(faithful[0], {}).get("layer") or "")
            why = f"its most faithful method is {faithful[0]}" if faithful else "no method beat random there"
            notes.append(f"regions from occlusion: the explain probe ranked the methods and {why}")
            return "occlusion", ""
        x = to_float(ctx.split.test_x[ctx.sample(128, "shortcut.layer")])
        choice = choose_cam_layer(ctx.model, x, prefer=_declared_layer(ctx.model))
        if choice.layer:
            notes.append(f"regions from Grad-CAM on {choice.layer}: {choice.reason}")
            return "gradcam", choice.layer
        notes.append(f"regions from occlusion alone: {choice.reason}")
        return "occlusion", ""

    def _attribution(
        self, ctx: ProbeContext, warnings: list[str], notes: list[str]
    ) -> tuple[str, Attribution]:
        """The method the regions come from; why (for ``auto``) is appended to ``notes``."""
        method, layer = self.method, self.layer
        if method == "auto":
            found: list[str] = []
            method, chosen = self._auto(ctx, found)
            layer = layer or chosen
            notes.append("Shortcut search: " + "; ".join(found) + ".")
        if method == "gradcam":
            try:
                layer = layer or default_cam_layer(ctx.model)
                return "gradcam", ATTRIBUTIONS.build("gradcam", where="probes.shortcut", layer=layer)
            except ConfigError as e:
                warnings.append(f"shortcut: Grad-CAM cannot run on this model ({e}); used occlusion instead")
        return "occlusion", self._refiner(ctx)

    def _coarse(self, ctx: ProbeContext, method: Attribution, x: Tensor) -> bool:
        """Whether ``method`` is Grad-CAM on a layer coarser than the image (e.g. 7x7 cells of
        4x4 pixels), whose boxes occlusion should refine."""
        layer = method.used_settings().get("layer")
        if not method.needs_conv_layer or not layer or self.refine_images <= 0 or not len(x):
            return False
        rh, rw = layer_resolution(ctx.model, layer, x[0])
        return rh < ctx.info.height or rw < ctx.info.width

    def _refiner(self, ctx: ProbeContext) -> Attribution:
        """Occlusion with the probe's settings, fitted to the images by its ``prepare`` (the
        dataset's mean; a window larger than the images shrunk to a quarter of their side)."""
        window, stride, fill = self.occlusion
        side = min(ctx.info.height, ctx.info.width)
        if window is None:
            window = refine_window(side)
        if stride is None:
            stride = min(window, refine_stride(side))
        occlusion: Attribution = ATTRIBUTIONS.build(
            "occlusion", where="probes.shortcut", window=window, stride=stride, fill=fill
        )
        return occlusion.prepare(ctx.model, ctx.info)[0]

    def _maps(self, method: Attribution, ctx: ProbeContext, x: Tensor, y: Tensor) -> Tensor:
        """The maps of images ``x`` for classes ``y``, in ``ctx.shards`` (here or as Ray tasks)."""
        fn = functools.partial(maps_shard, method=method, batch_size=ctx.batch_size)
        return torch.cat(ctx.shards.map(fn, ctx.model, {"x": x, "y": y}, align=ctx.batch_size))

    def run(self, ctx: ProbeContext) -> ProbeResult:
        res = ProbeResult()
        method_name, method = self._attribution(ctx, res.warnings, res.summary)
        recipients = imgs.correct_test_images(ctx, self.max_images)
        sets = {"test": recipients} if "test" in self.sources else {}
        if "train" in self.sources:
            sets["train"] = imgs.correct_train_images(ctx, self.max_images)
        refiner = self._refiner(ctx) if self._coarse(ctx, method, recipients.x) else None
        regions, maps_by = self._find_regions(ctx, method, refiner, sets)
        regions = self._describe(ctx, regions)
        plain = ctx.info.background is not None
        n_tests = len(regions) + (0 if plain else len({r["class"] for r in regions}))
        alpha = self.alpha / max(1, n_tests)
        totals = [0, 0.0]
        with ctx.track("shortcut: transplant tests", n_tests) as advance:
            for rec in regions:
                self._test_region(ctx, rec, recipients, alpha, totals)
                advance(1)
            background = [] if plain else self._background(ctx, regions, maps_by, recipients, alpha, totals)
            advance(len(background))
        settings = {
            "method": method_name,
            "sources": list(sets),
            "alpha": self.alpha,
            "alpha_per_test": alpha,
            "min_ratio": self.min_ratio,
            "min_flip_rate": self.min_flip_rate,
            "top_fraction": self.top_fraction,
            "max_regions": self.max_regions,
            "refined_by_occlusion": refiner is not None,
            "refine_images": self.refine_images if refiner is not None else 0,
            "n_transplant": self.n_transplant,
            **self.kind_settings,
        }
        report(ctx, res, regions, background, maps_by, totals, settings)
        return res

    def needs_training_data(self) -> str | None:
        """Always a reason: regions are described across each class's training images."""
        return (
            "it describes each found region across the class's training images and, by default, "
            "searches training images too; there are none"
        )

    def _class_regions(
        self, ctx: ProbeContext, refiner: Attribution | None, maps: Tensor, x: Tensor, cls: int
    ) -> list[Found]:
        """Up to ``max_regions`` regions of class ``cls`` from its images ``x`` and their
        maps, strongest first; with a coarse method, the search of :func:`search`."""
        n = 1 if refiner is not None else self.max_regions
        found = class_regions(maps, self.top_fraction, self.max_region_fraction, self.min_images, n)
        if refiner is None or not found:
            return found
        return search(
            found[0],
            refiner,
            ctx.model,
            x[: self.refine_images],
            cls,
            top_fraction=self.top_fraction,
            max_fraction=self.max_region_fraction,
            batch_size=max(ctx.batch_size, 256),
            n_regions=self.max_regions,
        )

    def _find_regions(
        self,
        ctx: ProbeContext,
        method: Attribution,
        refiner: Attribution | None,
        sets: dict[str, imgs.Images],
    ) -> tuple[list[dict[str, Any]], dict[tuple[str, int], Tensor]]:
        """Every source's regions per class (rank 1: the strongest) and each class's mean
        map per source."""
        h, w = ctx.info.height, ctx.info.width
        regions: list[dict[str, Any]] = []
        maps_by: dict[tuple[str, int], Tensor] = {}
        with ctx.track("shortcut: attribution", len(sets)) as advance:
            for name, s in sets.items():
                maps = self._maps(method, ctx, s.x, s.y) if len(s.y) else torch.empty(0, h, w)
                for cls in range(ctx.info.num_classes):
                    of_class = s.y == cls
                    found = self._class_regions(ctx, refiner, maps[of_class], s.x[of_class], cls)
                    if found:
                        maps_by[(name, cls)] = found[0].mean_map
                    for rank, f in enumerate(found, start=1):
                        regions.append(
                            {
                                "source": name,
                                "class": cls,
                                "class_name": ctx.info.class_names[cls],
                                "rank": rank,
                                "box": f.box.to_dict(),
                                "box_text": f.box.describe(),
                                "share": round(f.share, 4),
                                "area": round(f.box.area / (h * w), 4),
                                "consistency": round(f.consistency, 4),
                                "n_images": f.n_images,
                                "refined_by_occlusion": f.refined,
                                "_box": f.box,
                                "_donors": s.x[of_class],
                                "_donor_index": s.index[of_class],
                            }
                        )
                advance(1)
        return regions, maps_by

    def _describe(self, ctx: ProbeContext, regions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each region's kind (:func:`describe_region`, on the class's training images); a
        region is narrowed to the constant pattern it holds (:func:`pattern_core`) when it is
        not one as a whole, or when it is one but its core sets the class further apart from
        the other classes (more times over: a patch of plain border beside a planted square,
        repeated by the class twice as often as by others, is a weaker pattern than the
        square that no other class carries), or as far apart but repeated by more of the
        class's images (a box that cuts through a planted square takes in part of it and
        the varying object beside it; its core is the square). The regions
        to test: every class's strongest, and the others that hold a constant pattern (only
        a pattern can be a shortcut; testing the rest would cost Bonferroni power)."""
        kept = []
        for rec in regions:
            g = ctx.generator(101 + rec["class"])
            own = imgs.class_training_images(ctx, rec["class"], self.max_kind_images, g)
            others = imgs.other_training_images(ctx, rec["class"], self.max_kind_images, g)
            kind = self._kind(own, others, rec["_box"], ctx, g)
            core = pattern_core(
                own,
                rec["_box"],
                background=ctx.info.background,
                other_x=others,
                match_tolerance=self.kind_settings["match_tolerance"],
                min_pattern_share=self.kind_settings["min_pattern_share"],
                pattern_ratio=self.kind_settings["pattern_ratio"],
            )
            if core is not None and core != rec["_box"]:
                narrowed = self._kind(own, others, core, ctx, g)
                if narrowed.kind == PATTERN and (kind.kind != PATTERN or sharper(narrowed, kind)):
                    kind = narrowed
                    h, w = ctx.info.height, ctx.info.width
                    rec.update(
                        _box=core,
                        box=core.to_dict(),
                        box_text=core.describe(),
                        area=round(core.area / (h * w), 4),
                        narrowed_to_pattern=True,
                    )
            rec["kind"] = kind.to_dict()
            if rec["rank"] == 1 or kind.kind == PATTERN:
                kept.append(rec)
        return kept

    def _kind(
        self, own: Tensor, others: Tensor, box: Box, ctx: ProbeContext, g: torch.Generator
    ) -> RegionKind:
        return describe_region(
            own,
            others,
            box,
            background=ctx.info.background,
            generator=g,
            **self.kind_settings,  # type: ignore[arg-type]
        )

    def _recipients(self, recipients: imgs.Images, cls: int, ctx: ProbeContext) -> tuple[Tensor, Tensor]:
        pos = torch.nonzero(recipients.y != cls).flatten()
        pos = pos[torch.randperm(len(pos), generator=ctx.generator(31 + cls))[: self.n_transplant]]
        return recipients.x[pos], recipients.index[pos]

    def _test_region(
        self,
        ctx: ProbeContext,
        rec: dict[str, Any],
        recipients: imgs.Images,
        alpha: float,
        totals: list[Any],
    ) -> None:
        cls, box = rec["class"], rec["_box"]
        kind = rec["kind"]["kind"]
        rx, rindex = self._recipients(recipients, cls, ctx)
        if len(rx) == 0:
            rec.update(flip={"n": 0, "flips": 0}, control={"n": 0, "flips": 0}, p_value=1.0, shortcut=False)
            return
        test, donor_of = transplant_test(
            ctx.model,
            rx,
            rec["_donors"],
            box,
            cls,
            generator=ctx.generator(211 + cls),
            batch_size=ctx.forward_batch,
            shards=ctx.shards,
        )
        totals[0] += test.images
        totals[1] += test.seconds
        significant = test.significant(alpha, self.min_ratio, self.min_flip_rate)
        rec.update(
            flip=test.region.to_dict(),
            control=test.control.to_dict(),
            p_value=test.p_value,
            shortcut=significant and kind == PATTERN,
            object_reliance=significant and kind != PATTERN,
        )
        if math.isfinite(test.ratio):
            rec["ratio"] = round(test.ratio, 4)
        flipped = torch.nonzero(test.preds == cls).flatten()[: self.n_examples]
        rec["examples"] = [
            {"recipient_index": int(rindex[i]), "donor_index": int(rec["_donor_index"][donor_of[i]])}
            for i in flipped.tolist()
        ]
        rec["_examples"] = (rx[flipped], rec["_donors"][donor_of[flipped]])

    def _background(
        self,
        ctx: ProbeContext,
        regions: list[dict[str, Any]],
        maps_by: dict[tuple[str, int], Tensor],
        recipients: imgs.Images,
        alpha: float,
        totals: list[Any],
    ) -> list[dict[str, Any]]:
        means, overall = imgs.class_means(ctx)
        out = []
        for cls in sorted({r["class"] for r in regions}):
            src = next(s for s in self.sources if (s, cls) in maps_by)
            m = maps_by[(src, cls)]
            mask = m <= torch.quantile(m.flatten().double(), self.background_quantile).float()
            rx, _ = self._recipients(recipients, cls, ctx)
            if len(rx) == 0:
                continue
            bs = ctx.forward_batch
            test = background_test(ctx.model, rx, mask, means[cls], overall, cls, batch_size=bs)
            totals[0] += test.images
            totals[1] += test.seconds
            rec: dict[str, Any] = {
                "class": cls,
                "class_name": ctx.info.class_names[cls],
                "map_source": src,
                "background_pixels": int(mask.sum()),
                "flip": test.region.to_dict(),
                "control": test.control.to_dict(),
                "p_value": test.p_value,
                "reliance": test.significant(alpha, self.min_ratio, self.min_flip_rate),
            }
            if math.isfinite(test.ratio):
                rec["ratio"] = round(test.ratio, 4)
            flipped = torch.nonzero(test.preds == cls).flatten()[: self.n_examples]
            before = rx[flipped]
            rec["_examples"] = (before, torch.where(mask[None, None], means[cls][None], before))
            out.append(rec)
        return out
