"""Per-channel statistics of uint8 image sets (for the model's Normalize layer)."""

from __future__ import annotations

import math

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
