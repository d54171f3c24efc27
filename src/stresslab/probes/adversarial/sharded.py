"""The attacks' per-image loops in shards (``ctx.shards``): the clean pass and each sweep cut
into shards of whole batches, run here or as Ray tasks, and merged in test-index order.

Merged results equal a single pass: batches are the same (shards start on batch
boundaries), each batch's random starts are keyed by its first official test index, and the
gallery keeps the first flipped images in the order attacked.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from stresslab.devices import model_device
from stresslab.probes.adversarial.sweep import AttackRun, CleanPass, Flipped, Sweeper, sweep_units
from stresslab.shards import Advance, ShardExecutor


def clean_shard(model: nn.Module, data: dict[str, Tensor], advance: Advance, *, batch_size: int) -> CleanPass:
    """:meth:`Sweeper.clean` over one shard's images ``data["x"]`` and labels ``data["y"]``."""
    return Sweeper(model, model_device(model), batch_size, advance).clean(data["x"], data["y"])


def sweep_shard(
    model: nn.Module,
    data: dict[str, Tensor],
    advance: Advance,
    *,
    run: AttackRun,
    batch_size: int,
    key: tuple[int | str, ...] | None,
    gallery: int,
    measure_ssim: bool,
) -> AttackRun:
    """:meth:`Sweeper.sweep` of ``run``'s attack over one shard (``x``, ``y``, ``index`` and,
    for a gallery, ``clean_correct``), into a fresh :class:`AttackRun`."""
    fresh = AttackRun(run.name, run.attack, run.epsilons, run.variant, run.doubled)
    return Sweeper(model, model_device(model), batch_size, advance).sweep(
        fresh,
        data["x"],
        data["y"],
        key,
        index=data["index"],
        clean_correct=data.get("clean_correct"),
        gallery=gallery,
        measure_ssim=measure_ssim,
    )


def sharded_clean(
    shards: ShardExecutor, model: nn.Module, x: Tensor, y: Tensor, batch_size: int, advance: Advance
) -> CleanPass:
    """The clean pass over images ``x`` (n, C, H, W) with labels ``y`` (n,), in shards."""
    parts = shards.map(
        functools.partial(clean_shard, batch_size=batch_size),
        model,
        {"x": x, "y": y},
        align=batch_size,
        advance=advance,
        units=lambda n: math.ceil(n / batch_size),
    )
    return CleanPass(
        torch.cat([p.correct for p in parts]),
        torch.cat([p.preds for p in parts]),
        torch.cat([p.confidence for p in parts]),
        sum(p.zero_gradients for p in parts),
    )


def sharded_sweep(
    shards: ShardExecutor,
    model: nn.Module,
    run: AttackRun,
    data: dict[str, Tensor],
    *,
    batch_size: int,
    advance: Advance,
    key: tuple[int | str, ...] | None = None,
    gallery: int = 0,
    measure_ssim: bool = True,
) -> AttackRun:
    """Fill ``run`` by attacking ``data`` (``x``, ``y``, ``index``, optionally
    ``clean_correct``; see :meth:`Sweeper.sweep`) in shards; returns ``run``."""
    per_batch = sweep_units(run.attack, len(run.epsilons))
    fn = functools.partial(
        sweep_shard, run=run, batch_size=batch_size, key=key, gallery=gallery, measure_ssim=measure_ssim
    )
    parts = shards.map(
        fn,
        model,
        data,
        align=batch_size,
        advance=advance,
        units=lambda n: math.ceil(n / batch_size) * per_batch,
    )
    return merge(run, parts, gallery)


def merge(run: AttackRun, parts: Sequence[AttackRun], gallery: int) -> AttackRun:
    """``parts`` (consecutive shards, in order) joined into ``run``: per-image results
    concatenated, the largest excesses, and the first ``gallery`` flipped images per epsilon."""
    eps = run.epsilons
    run.correct = [torch.cat([p.correct[j] for p in parts]) for j in range(len(eps))]
    run.preds = [torch.cat([p.preds[j] for p in parts]) for j in range(len(eps))]
    run.confidence = [torch.cat([p.confidence[j] for p in parts]) for j in range(len(eps))]
    measured = all(p.ssim for p in parts)
    run.ssim = [torch.cat([p.ssim[j] for p in parts]) for j in range(len(eps))] if measured else []
    run.norm_excess = max([run.norm_excess, *(p.norm_excess for p in parts)])
    run.box_excess = max([run.box_excess, *(p.box_excess for p in parts)])
    kept: dict[float, list[Flipped]] = {}
    offset = 0
    for p in parts:
        for e, f in p.gallery.items():
            kept.setdefault(e, []).append(Flipped(f.positions + offset, f.clean, f.adversarial))
        offset += len(p.correct[0]) if p.correct else 0
    run.gallery = {
        e: Flipped(
            torch.cat([f.positions for f in fl])[:gallery],
            torch.cat([f.clean for f in fl])[:gallery],
            torch.cat([f.adversarial for f in fl])[:gallery],
        )
        for e in eps
        if (fl := kept.get(e))
    }
    return run
