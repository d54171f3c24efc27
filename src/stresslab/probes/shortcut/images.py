"""The images the shortcut probe works on: correctly classified test and training images,
and a class's training images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stresslab.data.base import to_float
from stresslab.data.sampling import stratified_sample
from stresslab.probes.base import ProbeContext, batched_forward


@dataclass(frozen=True)
class Images:
    """Correctly classified images of one set: ``x`` (n, C, H, W) float in [0, 1] on CPU,
    ``y`` (n,) int64 labels, ``index`` (n,) their indices in the official split (test or
    training), ``name`` ``"test"`` or ``"train"``."""

    name: str
    x: Tensor
    y: Tensor
    index: Tensor


def correct_test_images(ctx: ProbeContext, max_images: int | None) -> Images:
    """The correctly classified images of the shared test sample of size ``max_images``."""
    pos = ctx.sample(max_images, "shortcut")
    p = ctx.predictions
    keep = pos[p.correct[pos]]
    return Images("test", to_float(ctx.split.test_x[keep]), p.labels[keep], p.index[keep])


def correct_train_images(ctx: ProbeContext, max_images: int | None) -> Images:
    """The correctly classified images of a seeded class-stratified sample of the training
    set (the package's one sampler, seeded like ``ctx.sample``)."""
    split = ctx.split
    n = len(split.train_y)
    size = n if not max_images or max_images >= n else int(max_images)
    pos = torch.arange(n) if size == n else stratified_sample(split.train_y, size, seed=ctx.sample_seed)
    x = to_float(split.train_x[pos])
    y = split.train_y[pos]
    from stresslab.scoped import inference_scope

    with inference_scope(ctx.model):
        pred = batched_forward(ctx.model, x, ctx.batch_size, ctx.device).argmax(dim=1)
    keep = pred == y
    return Images("train", x[keep], y[keep], split.train_index[pos][keep])


def class_training_images(ctx: ProbeContext, cls: int, cap: int, generator: torch.Generator) -> Tensor:
    """Up to ``cap`` training images of class ``cls`` (seeded draw), float (n, C, H, W)."""
    pos = torch.nonzero(ctx.split.train_y == cls).flatten()
    pos = pos[torch.randperm(len(pos), generator=generator)[:cap]]
    return to_float(ctx.split.train_x[pos])


def other_training_images(ctx: ProbeContext, cls: int, cap: int, generator: torch.Generator) -> Tensor:
    """Up to ``cap`` training images of every class but ``cls`` (seeded draw)."""
    pos = torch.nonzero(ctx.split.train_y != cls).flatten()
    pos = pos[torch.randperm(len(pos), generator=generator)[:cap]]
    return to_float(ctx.split.train_x[pos])


def class_means(ctx: ProbeContext) -> tuple[Tensor, Tensor]:
    """Per-class mean training images (K, C, H, W) and the mean of all training images
    (C, H, W), float in [0, 1], accumulated in chunks."""
    split, k = ctx.split, ctx.info.num_classes
    shape = tuple(split.train_x.shape[1:])
    sums = torch.zeros(k, *shape, dtype=torch.float64)
    counts = torch.bincount(split.train_y, minlength=k).double()
    for i in range(0, len(split.train_y), 4096):
        xb = to_float(split.train_x[i : i + 4096]).double()
        sums.index_add_(0, split.train_y[i : i + 4096], xb)
    means = sums / counts.clamp(min=1).view(k, *([1] * len(shape)))
    overall = sums.sum(0) / max(1.0, float(counts.sum()))
    return means.float(), overall.float()
