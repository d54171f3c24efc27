"""Colour operations on whole batches with one factor per image (for SimCLR's colour jitter).

Each matches the torchvision function of the same name applied image by image
(``torchvision.transforms.v2.functional.adjust_*``, ``rgb_to_grayscale``); the tests check
that. Images are float (N, 3, H, W) in [0, 1]; factors are float (N,) on the batch's device.
"""

from __future__ import annotations

import torch
from torch import Tensor

_LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, as torchvision and PIL


def _per_image(f: Tensor, x: Tensor) -> Tensor:
    return f.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def grayscale(x: Tensor) -> Tensor:
    """Luma (N, 1, H, W) of RGB images (N, 3, H, W): ``0.2989 R + 0.587 G + 0.114 B``."""
    r, g, b = x.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    r = _per_image(ratio, x)
    return (r * x + (1.0 - r) * other).clamp(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``x * factor`` clipped to [0, 1]; factor >= 0 (1: unchanged)."""
    return (x * _per_image(factor, x)).clamp(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean luma: ``factor * x + (1 - factor) * mean`` clipped (1: unchanged)."""
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the grayscale image (0: gray, 1: unchanged, >1: more saturated), clipped."""
    return _blend(x, grayscale(x), factor)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB (N, 3, H, W) in [0, 1] -> HSV (N, 3, H, W), every channel in [0, 1] (hue in turns)."""
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    gray = delta == 0
    s = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    d = torch.where(gray, torch.ones_like(delta), delta)
    # Hue by which channel is the maximum (red first on ties, then green), in sixths of a turn.
    h = torch.where(
        maxc == r,
        (g - b) / d,
        torch.where(maxc == g, 2.0 + (b - r) / d, 4.0 + (r - g) / d),
    )
    h = torch.where(gray, torch.zeros_like(h), h)
    h = torch.remainder(h / 6.0, 1.0)
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV (N, 3, H, W) in [0, 1] -> RGB (N, 3, H, W) in [0, 1].

    ``c = v - v s max(0, min(k, 4 - k, 1))`` with ``k = (n + 6 h) mod 6`` and n = 5, 3, 1 for
    R, G, B (the closed form of the piecewise definition).
    """
    h, s, v = x.unbind(dim=1)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + 6.0 * h, 6.0)
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=1).clamp(0.0, 1.0)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` turns, in [-0.5, 0.5] (0: unchanged)."""
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + shift.to(device=x.device, dtype=x.dtype).view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], dim=1))
