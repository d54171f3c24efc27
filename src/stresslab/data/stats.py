"""Per-channel statistics of uint8 image sets (for the model's Normalize layer)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stresslab.errors import DataError


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), scaled to [0, 1].

    Exact: computed from a 256-bin histogram per channel in float64.
    """
    if len(x) == 0:
        raise DataError("no training images to compute channel statistics from")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        total = hist.sum()
        mean = float((hist * values).sum() / total)
        var = float((hist * (values - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(math.sqrt(var))
    return tuple(means), tuple(stds)
