"""Random textures drawn in batches: the plasma fractal (fog) and a procedural frost layer."""

from __future__ import annotations

import torch
from torch import Tensor

from stresslab.corruptions import _random
from stresslab.corruptions._filters import motion_blur


def plasma_fractal(
    n: int, mapsize: int, wibbledecay: float, generator: torch.Generator, device: torch.device
) -> Tensor:
    """``n`` diamond-square height maps (n, mapsize, mapsize) scaled to [0, 1] per map.

    The ``plasma_fractal`` of Hendrycks & Dietterich (2019) (after FLHerne's mapgen), run
    for a whole batch at once; ``mapsize`` must be a power of two. Each halving of the
    step divides the random "wibble" by ``wibbledecay`` (larger: smoother maps).
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2; got {mapsize}")
    m = torch.zeros(n, mapsize, mapsize, device=device)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        noise = _random.uniform(tuple(total.shape), -wibble, wibble, generator, device)
        return total / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        square = corners + corners.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        m[:, half::step, half::step] = wibbled_mean(square)

        centres = m[:, half::step, half::step]
        corners = m[:, 0::step, 0::step]
        left = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        m[:, 0::step, half::step] = wibbled_mean(left)
        top = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        m[:, half::step, 0::step] = wibbled_mean(top)
        step = half
        wibble /= wibbledecay

    flat = m.view(n, -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / flat.max(dim=1, keepdim=True).values.clamp_min(1e-12)
    return flat.view(n, mapsize, mapsize)


def next_power_of_two(size: int) -> int:
    """Smallest power of two >= ``size`` (and >= 2)."""
    p = 2
    while p < size:
        p *= 2
    return p


# Mean colour of the five frost photographs used for CIFAR-10-C, downscaled by 0.2 as there
# (R, G, B about 0.57, 0.66, 0.70): frost is a bright, blue-white layer.
_FROST_TINT = (0.82, 0.94, 1.0)


def frost_sheets(
    count: int, height: int, width: int, generator: torch.Generator, device: torch.device
) -> Tensor:
    """``count`` grayscale frost sheets (count, 1, height, width) in [0, 1].

    A bright base (level 0.5 to 0.8 per sheet, as the photographs vary), a plasma-fractal
    haze, and ice needles: sparse seeds smeared by two-sided line kernels in three random
    directions. Matched to the five CIFAR-10-C frost photographs at their CIFAR scale (0.2):
    over 32 px crops, mean about 0.63 (photographs 0.64), spatial standard deviation about
    0.11 (0.06 to 0.17), mean neighbour difference about 0.07 (0.04 to 0.12).
    """
    size = next_power_of_two(max(height, width))
    haze = plasma_fractal(count, size, 2.0, generator, device)[:, :height, :width].unsqueeze(1)
    haze = haze - haze.mean(dim=(2, 3), keepdim=True)
    level = _random.uniform((count, 1, 1, 1), 0.5, 0.8, generator, device)
    needles = torch.zeros(count, 1, height, width, device=device)
    length = max(2.0, 0.075 * min(height, width))
    for _ in range(3):
        seeds = (_random.uniform((count, 1, height, width), 0, 1, generator, device) < 0.04).float()
        seeds = seeds * _random.uniform((count, 1, height, width), 0.5, 1.0, generator, device)
        angle = _random.uniform((count,), 0.0, 180.0, generator, device)
        needles = needles + motion_blur(seeds, length, length, angle)
        needles = needles + motion_blur(seeds, length, length, angle + 180.0)
    needles = needles / needles.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    needles = needles - needles.mean(dim=(2, 3), keepdim=True)
    return (level + 0.45 * haze + 0.6 * needles).clamp(0, 1)


def frost_texture(
    n: int, channels: int, height: int, width: int, generator: torch.Generator, device: torch.device
) -> Tensor:
    """Procedural frost layers (n, channels, height, width) in [0, 1], one per image.

    Stands in for the frost photographs of CIFAR-10-C, which are not shipped. As there, a
    few frost sheets (five, here drawn at twice the image size) are shared by the batch and
    each image gets a random sheet and a random crop of it. RGB layers get the
    photographs' blue-white tint; one-channel layers are the luminance.
    """
    sheets = frost_sheets(5, 2 * height, 2 * width, generator, device)  # (5, 1, 2H, 2W)
    pick = _random.integers((n,), 0, 5, generator, device)
    top = _random.integers((n, 1, 1), 0, height + 1, generator, device)
    left = _random.integers((n, 1, 1), 0, width + 1, generator, device)
    rows = torch.arange(height, device=device).view(1, height, 1) + top
    cols = torch.arange(width, device=device).view(1, 1, width) + left
    gray = sheets[pick, 0][torch.arange(n, device=device).view(n, 1, 1), rows, cols].unsqueeze(1)
    if channels == 1:
        return gray
    tint = torch.tensor(_FROST_TINT, device=device).view(1, 3, 1, 1)
    return (gray * tint).clamp(0, 1)
