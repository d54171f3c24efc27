"""The duplicates section of the representation probe: counts, accuracy with and without
the duplicates, a warning for exact copies, tables and galleries of the pairs."""

from __future__ import annotations

from typing import Any

import torch

from stresslab.data.base import to_float
from stresslab.metrics.duplicates import DuplicatePair, accuracy_split, pixel_mae
from stresslab.probes.base import ProbeContext, ProbeResult, Table
from stresslab.probes.representation.figures import pair_gallery
from stresslab.probes.representation.present import pct

_SHOWN_PAIRS = 16


def _title(ctx: ProbeContext, names: list[str], d: DuplicatePair, test: bool) -> str:
    if test:
        return f"test #{int(ctx.split.test_index[d.test])}\n{names[int(ctx.split.test_y[d.test])][:10]}"
    label = names[int(ctx.split.train_y[d.train])][:10]
    return f"train #{int(ctx.split.train_index[d.train])}\n{label} {d.similarity:.4f}"


def _pairs_figure(ctx: ProbeContext, names: list[str], pairs: list[DuplicatePair], title: str) -> Any:
    shown = pairs[:_SHOWN_PAIRS]
    tx = to_float(ctx.split.test_x[[d.test for d in shown]]) if shown else torch.empty(0)
    rx = to_float(ctx.split.train_x[[d.train for d in shown]]) if shown else torch.empty(0)
    tt = [_title(ctx, names, d, True) for d in shown]
    rt = [_title(ctx, names, d, False) for d in shown]
    return pair_gallery(tx, rx, tt, rt, title)


_COLUMNS = (
    "test index",
    "train index",
    "test label",
    "train label",
    "similarity",
    "training copies",
    "pixel MAE (0-255)",
    "model right",
)


def duplicate_section(
    res: ProbeResult,
    ctx: ProbeContext,
    names: list[str],
    exact: list[DuplicatePair],
    near: list[DuplicatePair],
    threshold: float,
    n_train_sample: int,
) -> None:
    """Counts, accuracy with and without the duplicates, warnings, tables and galleries."""
    res.metrics.update(n_exact_duplicates=len(exact), n_near_duplicates=len(near))
    _exact_findings(res, ctx, exact)
    if near:
        _near_findings(res, ctx, exact, near, threshold, n_train_sample)
    for kind, pairs in (("exact", exact), ("near", near)):
        _pair_listing(res, ctx, names, kind, pairs, threshold, n_train_sample)


def _exact_findings(res: ProbeResult, ctx: ProbeContext, exact: list[DuplicatePair]) -> None:
    """Accuracy on and off the exact copies and a warning that they inflate test accuracy
    (naming the copies whose training label differs); without copies, a summary line."""
    p = ctx.predictions
    n_test, n_train = len(p.labels), len(ctx.split.train_y)
    if not exact:
        res.summary.append(
            f"No test image is an exact pixel copy of a training image ({n_test} x {n_train} compared)."
        )
        return
    on, off = accuracy_split(p.correct, [d.test for d in exact])
    if on is not None:
        res.metrics["accuracy_on_exact_duplicates"] = on
    if off is not None:
        res.metrics["accuracy_without_exact_duplicates"] = off
    relabelled = sum(int(ctx.split.test_y[d.test]) != int(ctx.split.train_y[d.train]) for d in exact)
    text = (
        f"{len(exact)} of the {n_test} test images have an exact pixel copy among the {n_train} "
        "training images (hash of the uint8 pixels). The model was trained on them, so they "
        f"inflate test accuracy: {pct(on or 0.0)} on them"
    )
    text += f", {pct(off)} on the other {n_test - len(exact)}." if off is not None else "."
    if relabelled:
        text += f" {relabelled} of the copies carry a different label in the training set (label noise)."
    res.warnings.append(text)


def _near_findings(
    res: ProbeResult,
    ctx: ProbeContext,
    exact: list[DuplicatePair],
    near: list[DuplicatePair],
    threshold: float,
    n_train_sample: int,
) -> None:
    """Accuracy on the near-duplicates (cosine >= ``threshold`` among ``n_train_sample``
    sampled training images) and a summary line saying how many are exact copies."""
    on, _ = accuracy_split(ctx.predictions.correct, [d.test for d in near])
    if on is not None:
        res.metrics["accuracy_on_near_duplicates"] = on
    n_exact_in = len({d.test for d in near} & {d.test for d in exact})
    res.summary.append(
        f"{len(near)} test images have a training image with cosine similarity >= {threshold:g} in "
        f"feature space among the {n_train_sample} sampled ({n_exact_in} of them exact copies); the "
        f"model is right on {pct(on or 0.0)} of them. Near-copies in feature space can be "
        "look-alikes: the table gives each pair's pixel difference."
    )


def _pair_listing(
    res: ProbeResult,
    ctx: ProbeContext,
    names: list[str],
    kind: str,
    pairs: list[DuplicatePair],
    threshold: float,
    n_train_sample: int,
) -> None:
    """The ``kind`` ("exact" or "near") pairs in ``res.data`` (all of them, with their pixel
    MAE in 0-255 units) and, where there are any, a table of the first 50 and a gallery."""
    p = ctx.predictions
    mae = pixel_mae(ctx.split.train_x, ctx.split.test_x, pairs)
    res.data[f"{kind}_duplicates"] = [
        {
            "index": int(ctx.split.test_index[d.test]),
            "train_index": int(ctx.split.train_index[d.train]),
            "similarity": d.similarity,
            "copies": d.copies,
            "pixel_mae": m,
            "correct": bool(p.correct[d.test]),
        }
        for d, m in zip(pairs, mae, strict=True)
    ]
    if not pairs:
        return
    rows = [
        [
            int(ctx.split.test_index[d.test]),
            int(ctx.split.train_index[d.train]),
            names[int(ctx.split.test_y[d.test])],
            names[int(ctx.split.train_y[d.train])],
            d.similarity,
            d.copies,
            m,
            bool(p.correct[d.test]),
        ]
        for d, m in zip(pairs[:50], mae, strict=False)
    ]
    what = (
        "exact pixel copies (whole sets)"
        if kind == "exact"
        else f"near-duplicates (cosine >= {threshold:g}, {n_train_sample} sampled training images)"
    )
    res.tables.append(Table(f"Train/test {what}", list(_COLUMNS), rows, caption=f"{len(pairs)} in all."))
    stem = f"{kind}_duplicates"
    res.figures[stem] = _pairs_figure(ctx, names, pairs, f"Test images (left) and training {what}")
    res.captions[stem] = f"Up to {_SHOWN_PAIRS} pairs, test image left, training image right."
