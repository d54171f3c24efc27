"""Per-image properties the data audit flags, in torch on whole uint8 batches (N, C, H, W).

Luma is perceived brightness per pixel, ``sqrt(0.241 R^2 + 0.691 G^2 + 0.068 B^2)`` in [0, 1]
(the formula CleanVision uses; a gray pixel's luma is its value). Per image:

- ``bright_p99``: the 99th percentile of luma (a dark image has no bright part);
- ``bright_p05``: the 5th percentile of luma (a light image has no dark part);
- ``contrast``: the standard deviation of luma, in [0, 0.5];
- ``entropy``: the Shannon entropy of the 256-bin histogram of the 8-bit gray image, in bits
  [0, 8] (PIL's ``Image.entropy`` on mode ``L``); a constant image has 0;
- ``sharpness``: ``log1p`` of the variance of the 4-neighbour Laplacian of the 8-bit gray
  image over its interior (Pech-Pacheco et al., ICPR 2000); blur lowers it;
- ``grayscale``: for 3-channel images, 1.0 where every pixel has its channels within 2 levels
  of each other (a gray image stored as colour), else 0.0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stresslab.devices import images_within

PROPERTIES = ("bright_p99", "bright_p05", "contrast", "entropy", "sharpness")
_W = (0.241, 0.691, 0.068)
CHUNK_VALUES = 2048 * 28 * 28
"""Image values (images x channels x height x width) turned into floats at a time: 2,048
Fashion-MNIST images, 58 RGB images of 96 px (a chunk of 2,048 of those held about 1 GB of
float copies)."""

_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def luma(x: Tensor) -> Tensor:
    """Perceived brightness (N, H, W) in [0, 1] of uint8 images (N, C, H, W), C = 1 or 3."""
    f = x.float() / 255.0
    if f.shape[1] == 1:
        return f[:, 0]
    w = torch.tensor(_W).view(1, 3, 1, 1)
    return (w * f[:, :3] ** 2).sum(dim=1).sqrt()


def gray8(x: Tensor) -> Tensor:
    """8-bit gray images (N, H, W) int64 (ITU-R BT.601 weights for colour, as PIL's ``L``)."""
    if x.shape[1] == 1:
        return x[:, 0].long()
    w = torch.tensor((0.299, 0.587, 0.114)).view(1, 3, 1, 1)
    return (w * x[:, :3].float()).sum(dim=1).round().clamp(0, 255).long()


def _quantile(v: Tensor, q: float) -> Tensor:
    """Per-row ``q`` quantile (linear interpolation, as ``torch.quantile``) of (N, P)."""
    s = v.sort(dim=1).values
    pos = q * (s.shape[1] - 1)
    lo = int(pos)
    hi = min(lo + 1, s.shape[1] - 1)
    return s[:, lo] + (pos - lo) * (s[:, hi] - s[:, lo])


def entropy_bits(g: Tensor) -> Tensor:
    """Shannon entropy (N,) in bits of the 256-bin histogram of 8-bit gray images (N, H, W)."""
    n = len(g)
    flat = g.reshape(n, -1)
    counts = torch.zeros(n, 256, dtype=torch.float64)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
    p = counts / flat.shape[1]
    return -(p * torch.where(p > 0, p.log2(), torch.zeros_like(p))).sum(dim=1)


def laplacian_variance(g: Tensor) -> Tensor:
    """Variance (N,) of the 4-neighbour Laplacian of gray images (N, H, W) over the interior."""
    if g.shape[1] < 3 or g.shape[2] < 3:
        return torch.zeros(len(g))
    lap = F.conv2d(g.float()[:, None], _LAPLACE.view(1, 1, 3, 3))
    return lap.flatten(1).var(dim=1, unbiased=False)


def is_grayscale(x: Tensor, tolerance: int = 2) -> Tensor:
    """Bool (N,): 3-channel images whose channels agree within ``tolerance`` levels at every
    pixel; False for 1-channel images (nothing to flag)."""
    if x.shape[1] != 3:
        return torch.zeros(len(x), dtype=torch.bool)
    v = x.short()
    spread = v.max(dim=1).values - v.min(dim=1).values
    return spread.flatten(1).max(dim=1).values <= tolerance


def chunk_images(x: Tensor) -> int:
    """Images (N, C, H, W) per chunk so that a chunk holds at most :data:`CHUNK_VALUES` values
    (at least one image)."""
    return images_within(x[0].numel() if len(x) else 1, CHUNK_VALUES)


def image_properties(x: Tensor, chunk: int | None = None) -> dict[str, Tensor]:
    """Every property in :data:`PROPERTIES` (float64 (N,)) plus ``grayscale`` (bool (N,)),
    from uint8 images (N, C, H, W), ``chunk`` images at a time (default
    :func:`chunk_images`: each chunk's float copies then take about 100 MB whatever the
    image size)."""
    parts: dict[str, list[Tensor]] = {k: [] for k in (*PROPERTIES, "grayscale")}
    chunk = chunk or chunk_images(x)
    for i in range(0, len(x), chunk):
        b = x[i : i + chunk]
        lum = luma(b).flatten(1)
        g = gray8(b)
        parts["bright_p99"].append(_quantile(lum, 0.99).double())
        parts["bright_p05"].append(_quantile(lum, 0.05).double())
        parts["contrast"].append(lum.double().std(dim=1, unbiased=False))
        parts["entropy"].append(entropy_bits(g))
        parts["sharpness"].append(laplacian_variance(g).double().log1p())
        parts["grayscale"].append(is_grayscale(b))
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in parts.items()}


def pixel_signature(x: Tensor, side: int = 16, chunk: int | None = None) -> Tensor:
    """Near-duplicate signatures (N, side * side): the 8-bit gray image shrunk to at most
    ``side`` x ``side`` (area average) minus its mean. Cosine similarity of two signatures is
    the Pearson correlation of the shrunk images: 1 for a copy, a brightened or
    contrast-stretched copy; 0 for a constant image against anything. Computed ``chunk``
    images at a time (default :func:`chunk_images`), so only one chunk is ever held as gray
    levels."""
    chunk = chunk or chunk_images(x)
    if len(x) > chunk:
        return torch.cat([pixel_signature(x[i : i + chunk], side, chunk) for i in range(0, len(x), chunk)])
    g = gray8(x).float()[:, None]
    h, w = g.shape[2:]
    if h > side or w > side:
        g = F.adaptive_avg_pool2d(g, (min(h, side), min(w, side)))
    s = g.flatten(1)
    return s - s.mean(dim=1, keepdim=True)
