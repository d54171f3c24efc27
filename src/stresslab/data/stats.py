"""Statistics of uint8 image sets: per-channel mean and std (for the model's Normalize layer)
and the plain background value where the images share one."""

from __future__ import annotations

import math

import numpy as np
import torch

from stresslab.data.indexed import Images
from stresslab.errors import DataError


def channel_stats(x: Images, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), scaled to [0, 1].

    Exact: computed from a 256-bin histogram per channel in float64, counted ``chunk``
    images at a time (a view of the image cache is read in batches, never whole).
    """
    if len(x) == 0:
        raise DataError("no training images to compute channel statistics from")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    counts = torch.zeros(x.shape[1], 256, dtype=torch.long)
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk]
        for c in range(x.shape[1]):
            counts[c] += torch.bincount(part[:, c].reshape(-1), minlength=256)
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = counts[c].to(torch.float64)
        total = hist.sum()
        mean = float((hist * values).sum() / total)
        var = float((hist * (values - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(math.sqrt(var))
    return tuple(means), tuple(stds)


#: A plain background: at least this share of the border pixels lie within
#: :data:`BACKGROUND_TOLERANCE` of their median (Fashion-MNIST's training images: 88%).
BACKGROUND_SHARE = 0.75
BACKGROUND_TOLERANCE = 0.05


def plain_background(x: Images, sample: int = 1000) -> float | None:
    """The pixel value in [0, 1] of a plain background shared by images ``x`` (N, C, H, W)
    uint8, from the one-pixel frame of up to ``sample`` evenly spaced images: the median
    frame value where at least :data:`BACKGROUND_SHARE` of the frame pixels are within
    :data:`BACKGROUND_TOLERANCE` of it in every channel, else ``None`` (photographs,
    textured or varied backgrounds). Images smaller than 3x3 have no frame to read: ``None``."""
    n, _, h, w = x.shape
    if n == 0 or h < 3 or w < 3:
        return None
    pick = np.unique(np.linspace(0, n - 1, min(sample, n)).astype(np.int64))
    f = np.asarray(x[pick], dtype=np.float32) / 255.0
    frame = np.concatenate(
        [f[:, :, 0, :], f[:, :, -1, :], f[:, :, 1:-1, 0], f[:, :, 1:-1, -1]], axis=2
    )  # (n, C, frame pixels)
    value = float(np.median(frame))
    near = (np.abs(frame - value) <= BACKGROUND_TOLERANCE).all(axis=1)
    return round(value, 4) if float(near.mean()) >= BACKGROUND_SHARE else None
