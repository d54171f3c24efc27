"""Blur corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): defocus, glass, motion, zoom.

Parameters are those of ``make_cifar_c.py``. Adaptations:

- defocus blur: the anti-aliased disk kernel is built exactly as there (17 x 17 disk,
  3 x 3 Gaussian of sigma ``alias_blur``), cropped to its non-zero support, and applied
  by a depthwise convolution with OpenCV's default border (mirror about the edge pixel).
- glass blur: the original swaps each pixel with a random neighbour in a sequential
  Python loop (the chain of swaps cannot run in parallel). Here each pixel instead takes
  the value of its neighbour at a random offset, drawn as there from [-max_delta,
  max_delta - 1]^2 over the same rows and columns, once per iteration, for the whole batch
  at once (a gather, not a permutation: a value can be copied twice or lost); the Gaussian
  blurs before and after and the 8-bit rounding in between are kept.
- motion blur: ImageMagick's motion blur (through Wand) is replaced by the same one-sided
  line kernel applied in torch (see ``_filters.motion_blur``); the radius and sigma, in
  pixels, scale with the image side / 32, so the streak covers the same share of a
  28 px or 16 px image as of a CIFAR one.
- zoom blur: the zoom factors are the original's (np.arange(1, 1 + z, 0.01)); each zoom
  is one bilinear resampling about the centre (the original crops, zooms with scipy and
  trims), computed as matrix products.
- Grayscale images are blurred like any channel; nothing depends on colour.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from stresslab.corruptions import _random
from stresslab.corruptions._filters import filter2d, gaussian_blur, zoom_sum
from stresslab.corruptions._filters import motion_blur as line_blur
from stresslab.corruptions.base import register_corruption

# (disk radius, alias-blur sigma), pixels.
DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))
# (Gaussian sigma in pixels, max pixel displacement, iterations).
GLASS_BLUR = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))
# (radius, sigma) in pixels of a 32 px image; the angle is uniform in [-45, 45] degrees.
MOTION_BLUR = ((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5))
# Largest zoom minus one: zooms are np.arange(1, 1 + z, 0.01).
ZOOM_BLUR_END = (0.06, 0.11, 0.16, 0.21, 0.26)


@lru_cache(maxsize=16)
def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """Anti-aliased disk (k, k) summing to 1: a 17 x 17 (or wider) binary disk of ``radius``
    blurred by a 3 x 3 Gaussian of sigma ``alias_blur`` (5 x 5 above radius 8), cropped to
    its non-zero support. As ``disk`` in ``make_cifar_c.py``."""
    half = 8 if radius <= 8 else math.ceil(radius)
    ksize = 3 if radius <= 8 else 5
    t = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(t, t)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-((np.arange(ksize) - ksize // 2) ** 2) / (2 * alias_blur**2))
    g /= g.sum()
    # The disk sits well inside its frame, so zero padding equals OpenCV's border handling.
    padded = np.pad(disk, ksize // 2)
    size = disk.shape[0]
    blurred = sum(
        g[i] * g[j] * padded[i : i + size, j : j + size] for i in range(ksize) for j in range(ksize)
    )
    nz = np.nonzero(np.abs(blurred) > 1e-12)
    r = int(max(np.abs(nz[0] - half).max(), np.abs(nz[1] - half).max()))
    return torch.from_numpy(blurred[half - r : half + r + 1, half - r : half + r + 1]).float()


@register_corruption("defocus_blur")
def defocus_blur(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Convolve with an anti-aliased disk (radius 0.3 .. 1.5 px): an out-of-focus lens."""
    radius, alias_blur = DEFOCUS_BLUR[severity - 1]
    return filter2d(x, disk_kernel(radius, alias_blur), mode="mirror")


@register_corruption("glass_blur")
def glass_blur(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Blur, jitter pixels locally (frosted glass), blur again; sigma 0.05 .. 0.4 px."""
    sigma, delta, iterations = GLASS_BLUR[severity - 1]
    n, c, h, w = x.shape
    y = torch.floor(gaussian_blur(x, sigma).clamp(0, 1) * 255.0) / 255.0
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    # The original visits rows and columns delta + 1 .. side - delta only, with offsets drawn
    # by np.random.randint(-delta, delta), i.e. in [-delta, delta - 1].
    inside = (rows > delta) & (rows <= h - delta) & (cols > delta) & (cols <= w - delta)
    for _ in range(iterations):
        dy = _random.integers((n, h, w), -delta, delta, generator, x.device) * inside
        dx = _random.integers((n, h, w), -delta, delta, generator, x.device) * inside
        index = ((rows + dy).clamp(0, h - 1) * w + (cols + dx).clamp(0, w - 1)).view(n, 1, h * w)
        y = y.reshape(n, c, h * w).gather(2, index.expand(n, c, h * w)).view(n, c, h, w)
    return gaussian_blur(y, sigma)


@register_corruption("motion_blur")
def motion_blur(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Camera shake: a one-sided line blur at a random angle in [-45, 45] degrees per image."""
    radius, sigma = MOTION_BLUR[severity - 1]
    scale = min(x.shape[-2:]) / 32.0
    angles = _random.uniform((x.shape[0],), -45.0, 45.0, generator, x.device)
    return line_blur(x, radius * scale, sigma * scale, angles)


@register_corruption("zoom_blur")
def zoom_blur(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Average of the image and its centre zooms by 1.00, 1.01, ... up to 1.06 .. 1.25."""
    factors = np.arange(1, 1 + ZOOM_BLUR_END[severity - 1], 0.01).tolist()
    return (x + zoom_sum(x, factors)) / (len(factors) + 1)
