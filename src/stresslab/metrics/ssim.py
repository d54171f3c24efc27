"""Structural similarity (SSIM) per image, Wang, Bovik, Sheikh and Simoncelli, "Image Quality
Assessment: From Error Visibility to Structural Similarity", IEEE TIP 2004.

The paper's setting: an 11x11 Gaussian window of standard deviation 1.5, ``K1 = 0.01``,
``K2 = 0.03``, the index averaged over every window that lies wholly inside the image and over
the channels (as ``skimage.metrics.structural_similarity(gaussian_weights=True,
use_sample_covariance=False)`` and ``torchmetrics.functional.structural_similarity_index_measure``
compute it). Images smaller than 11 pixels get the largest odd window that fits, with the
standard deviation scaled to keep the window's shape (:func:`ssim_window`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def ssim_window(height: int, width: int) -> tuple[int, float]:
    """The Gaussian window (odd size in pixels, standard deviation) for an image of this size:
    (11, 1.5), or the largest odd size that fits with ``sigma = 1.5 * size / 11``."""
    size = min(WINDOW, height, width)
    if size % 2 == 0:
        size -= 1
    if size < 1:
        raise ValueError(f"SSIM needs an image of at least 1x1 pixels, got {height}x{width}")
    return size, SIGMA * size / WINDOW


def _gaussian(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A normalized 1-D Gaussian of ``size`` taps centred on the middle one."""
    d = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (d / sigma) ** 2)
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, *, data_range: float = 1.0) -> Tensor:
    """SSIM of each image pair: ``x`` and ``y`` (N, C, H, W) -> (N,) float32 in [-1, 1].

    1 means identical. ``data_range`` is the span of pixel values (1 for images in [0, 1]).
    Local means, variances and covariance are Gaussian-weighted (population statistics);
    the index is averaged over the valid windows and the channels of each image. Computed
    in float64 on the inputs' device.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (N, C, H, W) batches of one shape, got {x.shape} and {y.shape}")
    n, c, h, w = x.shape
    if n == 0:
        return x.new_zeros(0, dtype=torch.float32)
    size, sigma = ssim_window(h, w)
    xd, yd = x.double(), y.double()
    g = _gaussian(size, sigma, xd.dtype, xd.device)
    kernel_h = g.view(1, 1, size, 1).expand(c, 1, size, 1)
    kernel_w = g.view(1, 1, 1, size).expand(c, 1, 1, size)

    def blur(t: Tensor) -> Tensor:
        # Separable Gaussian, valid windows only: (B, C, H, W) -> (B, C, H - size + 1, W - size + 1).
        return F.conv2d(F.conv2d(t, kernel_h, groups=c), kernel_w, groups=c)

    stats = blur(torch.cat([xd, yd, xd * xd, yd * yd, xd * yd]))
    mx, my, xx, yy, xy = stats.split(n)
    var_x = (xx - mx * mx).clamp_min(0.0)
    var_y = (yy - my * my).clamp_min(0.0)
    cov = xy - mx * my
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1).float()
