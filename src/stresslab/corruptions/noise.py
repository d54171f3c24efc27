"""Noise corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): Gaussian, shot, impulse.

Parameters are those of ``make_cifar_c.py``; noise is drawn independently per pixel and
channel, as there. No adaptation is needed for small or grayscale images.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stresslab.corruptions import _random
from stresslab.corruptions.base import register_corruption

# Standard deviation of the additive noise, in [0, 1] pixel units.
GAUSSIAN_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
# Photon count at full intensity: a pixel x becomes Poisson(x * c) / c.
SHOT_NOISE_PHOTONS = (500, 250, 100, 75, 50)
# Share of values replaced by salt (1) or pepper (0), half each (skimage ``s&p``).
IMPULSE_NOISE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)


@register_corruption("gaussian_noise")
def gaussian_noise(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Add N(0, c^2) per value, c = 0.04 .. 0.10 by severity; (N, C, H, W) in [0, 1] -> same."""
    std = GAUSSIAN_NOISE_STD[severity - 1]
    return x + _random.normal(tuple(x.shape), 0.0, std, generator, x.device)


@register_corruption("shot_noise")
def shot_noise(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Poisson (photon) noise: x -> Poisson(x * c) / c, c = 500 .. 50 by severity."""
    photons = float(SHOT_NOISE_PHOTONS[severity - 1])
    return _random.poisson(x.clamp(0, 1) * photons, generator) / photons


@register_corruption("impulse_noise")
def impulse_noise(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Salt-and-pepper noise: each value becomes 0 or 1 (even odds) with probability c = 0.01 .. 0.07."""
    amount = IMPULSE_NOISE_AMOUNT[severity - 1]
    flip = _random.uniform(tuple(x.shape), 0, 1, generator, x.device) < amount
    salt = _random.uniform(tuple(x.shape), 0, 1, generator, x.device) < 0.5
    return torch.where(flip, salt.to(x.dtype), x)
