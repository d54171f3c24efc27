"""The shortcut probe's findings as metrics, warnings, summary, tables, figures and data."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from stresslab.probes.base import ProbeContext, ProbeResult, Table
from stresslab.probes.shortcut import present
from stresslab.probes.shortcut.regions import Box
from stresslab.probes.shortcut.transplant import paste_boxes


def _public(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def distinct(shortcuts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flagged regions, strongest first, with a class's overlapping boxes (IoU > 0.3, e.g.
    found in both test and training images) counted once."""
    out: list[dict[str, Any]] = []
    for r in sorted(shortcuts, key=lambda r: -r["flip"].get("rate", 0.0)):
        if not any(u["class"] == r["class"] and u["_box"].iou(r["_box"]) > 0.3 for u in out):
            out.append(r)
    return out


def report(
    ctx: ProbeContext,
    res: ProbeResult,
    regions: list[dict[str, Any]],
    background: list[dict[str, Any]],
    maps_by: dict[tuple[str, int], Tensor],
    totals: list[Any],
    settings: dict[str, Any],
) -> None:
    """Fill ``res`` from the tested ``regions`` and ``background`` tests."""
    plain = ctx.info.background is not None
    tested = [r for r in regions if "flip" in r]
    found = distinct([r for r in tested if r["shortcut"]])
    on_object = [r for r in tested if r.get("object_reliance")]
    reliance = [b for b in background if b["reliance"]]
    m = res.metrics
    m.update(n_shortcuts=len(found), n_regions_tested=len(tested), n_object_regions_relied_on=len(on_object))
    rates = [r["flip"]["rate"] for r in tested if "rate" in r["flip"]]
    if rates:
        m["max_flip_rate"] = max(rates)
    if not plain:
        m.update(n_background_reliance=len(reliance), n_background_tests=len(background))
    if totals[1] > 0:
        m["transplant_images_per_s"] = totals[0] / totals[1]

    for r in found:
        kind = r["kind"]["kind"]
        where = f"{r['box_text']} ({r['box']['height']}x{r['box']['width']} pixels, a {kind})"
        line = (
            f"shortcut: {r['class_name']} — the model relies on {where}: pasting it from {r['class_name']} "
            f"{r['source']} images {present.flip_sentence(r)}."
        )
        res.warnings.append(line)
        res.summary.append(line[0].upper() + line[1:])
    for b in reliance:
        line = (
            f"background reliance: {b['class_name']} — painting the class's mean image over its background "
            f"({b['background_pixels']} low-attribution pixels) {present.flip_sentence(b)}."
        )
        res.warnings.append(line)
        res.summary.append(line[0].upper() + line[1:])
    if not found:
        res.summary.append(
            f"No shortcut found: none of the {len(tested)} regions that carry a class's evidence "
            f"({', '.join(settings['sources'])} images, {settings['method']}) is a constant pattern that "
            "flips other classes' predictions significantly more than a control paste."
        )
    if on_object:
        first = on_object[0]
        rate, control = (
            present.pct(first["flip"]["rate"]),
            present.pct(first["control"].get("rate", math.nan)),
        )
        res.summary.append(
            f"{len(on_object)} regions lie on the object (or, on a plain background, on its outline) and "
            f"still transplant (e.g. {first['class_name']}: {rate} vs {control} for the control): the model "
            "relies on the object's shape there, which is not a shortcut."
        )
    if plain:
        res.summary.append(
            "The background test was left out: the images have a plain background "
            f"({ctx.info.background:g}), the same for every class."
        )

    res.tables.append(
        Table(
            "Regions carrying each class's evidence, transplanted onto other classes",
            present.REGION_COLUMNS,
            [present.region_row(r) for r in tested],
            caption=(
                "Share: the class's mean attribution inside the box; consistency: the share of "
                "images whose own map puts at least twice the box's area share in it. Pattern "
                "share: the class's training images repeating the box's median patch. Flip rate: "
                "pasted onto correctly classified test images of other classes, share predicted as "
                "the class; control: a same-size box from a random place. Shortcut: p < "
                f"{settings['alpha_per_test']:.2g} (Bonferroni), rate >= {settings['min_flip_rate']:g} "
                f"and >= {settings['min_ratio']:g}x the control, and a constant pattern."
            ),
        )
    )
    if background:
        res.tables.append(
            Table(
                "Background test: the class's mean image painted over its background",
                [
                    "class",
                    "background pixels",
                    "flip rate",
                    "control flip rate",
                    "ratio",
                    "p (Fisher)",
                    "reliance",
                ],
                [
                    [
                        b["class_name"],
                        b["background_pixels"],
                        b["flip"].get("rate"),
                        b["control"].get("rate"),
                        b.get("ratio"),
                        b["p_value"],
                        "yes" if b["reliance"] else "no",
                    ]
                    for b in background
                ],
                caption="Control: the mean image of all classes painted over the same pixels.",
            )
        )
    _figures(ctx, res, regions, found, reliance, maps_by)
    res.data.update(
        regions=[_public(r) for r in regions],
        background=[_public(b) for b in background],
        shortcuts=[_public(r) for r in found],
        settings=settings,
    )


def _figures(
    ctx: ProbeContext,
    res: ProbeResult,
    regions: list[dict[str, Any]],
    found: list[dict[str, Any]],
    reliance: list[dict[str, Any]],
    maps_by: dict[tuple[str, int], Tensor],
) -> None:
    for source in dict.fromkeys(r["source"] for r in regions):
        rs = [r for r in regions if r["source"] == source]
        titles = [
            f"{r['class_name'][:12]}\n{r.get('kind', {}).get('kind', '')} {present.pct(r['share'])}"
            + ("\nSHORTCUT" if r.get("shortcut") else "")
            for r in rs
        ]
        stem = f"class_maps_{source}"
        res.figures[stem] = present.class_maps_figure(
            [r["_donors"].mean(dim=0) for r in rs],
            [maps_by[(source, r["class"])] for r in rs],
            [r["_box"] for r in rs],
            titles,
            f"Mean attribution of correctly classified {source} images per class, with the tested box",
        )
        res.captions[stem] = (
            "Each class's mean image under its mean normalized attribution map; the green box is the region "
            "transplanted; the title gives its kind and share of the attribution."
        )
    names = ctx.info.class_names
    for j, r in enumerate(found, start=1):
        before, donors = r["_examples"]
        box: Box = r["_box"]
        n = len(before)
        place = torch.full((n,), box.top), torch.full((n,), box.left)
        after = paste_boxes(before, donors, box, *place) if n else before
        stem = f"shortcut_{j}"
        res.figures[stem] = present.evidence_figure(
            donors[0] if n else r["_donors"][0],
            box,
            before,
            after,
            [f"before #{e['recipient_index']}" for e in r["examples"]],
            [f"after: {names[r['class']][:10]}" for _ in r["examples"]],
            f"Shortcut {j}: {r['class_name']}, {r['box_text']}",
        )
        res.captions[stem] = (
            f"Shortcut {j}: a {r['class_name']} donor with the box, then test images before and after it."
        )
    for j, b in enumerate(reliance, start=1):
        before, after = b["_examples"]
        stem = f"background_{j}"
        res.figures[stem] = present.evidence_figure(
            None,
            None,
            before,
            after,
            ["before"] * len(before),
            [f"after: {b['class_name'][:10]}"] * len(before),
            f"Background reliance {j}: {b['class_name']}",
        )
