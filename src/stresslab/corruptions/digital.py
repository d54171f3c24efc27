"""Digital corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): contrast, elastic,
pixelate, JPEG.

Parameters are those of ``make_cifar_c.py``. Adaptations:

- elastic transform: the original's sizes are fractions of IMSIZE = 32; here IMSIZE is the
  image's shorter side. The random affine warp (OpenCV, mirrored border) and the smoothed
  random displacement field (scipy ``map_coordinates``) are composed into one bilinear
  ``grid_sample`` with mirrored borders, so the image is resampled once, not twice (a
  little less softening than the original).
- pixelate: PIL's BOX resize down to int(side * c) and back up is applied as two exact
  PIL-style box-filter matrices per axis, without PIL's 8-bit rounding in between.
- JPEG: torchvision's ``encode_jpeg`` / ``decode_jpeg`` (libjpeg, 4:2:0 chroma
  subsampling as PIL's default) at the original qualities, one image at a time on the CPU
  (the codec has no batched form); grayscale images are coded as one-channel JPEGs.
- contrast works per image and channel, as the original, for any channel count.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

from stresslab.corruptions import _random
from stresslab.corruptions._filters import gaussian_blur
from stresslab.corruptions.base import register_corruption

# Factor applied to the deviation from each channel's mean.
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
# (displacement scale alpha, field smoothing sigma, affine jitter), as fractions of the side.
ELASTIC = (
    (0.0, 0.0, 0.08),
    (0.05, 0.2, 0.07),
    (0.08, 0.06, 0.06),
    (0.1, 0.04, 0.05),
    (0.1, 0.03, 0.03),
)
# Share of the side kept by the downscale.
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
# JPEG quality (0..100).
JPEG_QUALITY = (80, 65, 58, 50, 40)


@register_corruption("contrast")
def contrast(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Shrink each channel towards its mean: (x - m) * c + m, c = 0.75 .. 0.15."""
    c = CONTRAST[severity - 1]
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * c + mean


def _affine_inverse(
    n: int, h: int, w: int, jitter: float, generator: torch.Generator, device: torch.device
) -> Tensor:
    """Inverse (n, 2, 3) of random affine maps that move three anchor points by U(-jitter, jitter) px."""
    side = min(h, w)
    cx, cy, s = float(w // 2), float(h // 2), float(side // 3)
    src = torch.tensor([[cx + s, cy + s], [cx + s, cy - s], [cx - s, cy - s]], dtype=torch.float64)
    dst = (
        src.unsqueeze(0)
        + _random.uniform((n, 3, 2), -jitter, jitter, generator, torch.device("cpu")).double()
    )
    # Solve [dst | 1] @ A = src for the map that sends each output point back to its source.
    ones = torch.ones(n, 3, 1, dtype=torch.float64)
    inv = torch.linalg.solve(torch.cat([dst, ones], dim=2), src.unsqueeze(0).expand(n, 3, 2))  # (n, 3, 2)
    return inv.transpose(1, 2).float().to(device)


@register_corruption("elastic_transform")
def elastic_transform(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """A random affine warp plus a smooth random displacement field (Simard et al., 2003)."""
    alpha_f, sigma_f, jitter_f = ELASTIC[severity - 1]
    n, _, h, w = x.shape
    side = float(min(h, w))
    alpha, sigma, jitter = alpha_f * side, sigma_f * side, jitter_f * side
    inv = _affine_inverse(n, h, w, jitter, generator, x.device)
    field = _random.uniform((n, 2, h, w), -1.0, 1.0, generator, x.device)
    field = gaussian_blur(field, sigma, mode="reflect", truncate=3.0) * alpha
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype),
        torch.arange(w, device=x.device, dtype=x.dtype),
        indexing="ij",
    )
    px = xs + field[:, 0]
    py = ys + field[:, 1]
    qx = inv[:, 0, 0, None, None] * px + inv[:, 0, 1, None, None] * py + inv[:, 0, 2, None, None]
    qy = inv[:, 1, 0, None, None] * px + inv[:, 1, 1, None, None] * py + inv[:, 1, 2, None, None]
    grid = torch.stack([2 * qx / max(w - 1, 1) - 1, 2 * qy / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


@lru_cache(maxsize=64)
def box_resize_matrix(in_size: int, out_size: int) -> Tensor:
    """(out_size, in_size) weights of PIL's BOX resampling along one axis.

    Output pixel j averages the input pixels whose centres fall inside its footprint
    [(j) * s, (j + 1) * s), s = in_size / out_size, widened to one input pixel when
    upsampling (PIL ``precompute_coeffs`` with the box filter).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for j in range(out_size):
        center = (j + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        for i in range(lo, hi):
            t = (i - center + 0.5) / filterscale
            if -0.5 < t <= 0.5:
                m[j, i] = 1.0
        total = m[j].sum()
        if total > 0:
            m[j] /= total
    return m.float()


@register_corruption("pixelate")
def pixelate(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Box-downscale to int(side * c) (c = 0.95 .. 0.65) and box-upscale back."""
    c = PIXELATE[severity - 1]
    h, w = x.shape[-2:]
    sh, sw = max(1, int(h * c)), max(1, int(w * c))
    ry = (box_resize_matrix(sh, h) @ box_resize_matrix(h, sh)).to(x)
    rx = (box_resize_matrix(sw, w) @ box_resize_matrix(w, sw)).to(x)
    return torch.matmul(torch.matmul(ry, x), rx.T)


@register_corruption("jpeg_compression")
def jpeg_compression(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Encode and decode as JPEG at quality 80 .. 40 (8-bit, on the CPU)."""
    quality = JPEG_QUALITY[severity - 1]
    images = (x.detach().cpu() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    encoded = encode_jpeg(list(images.unbind(0)), quality=quality)
    decoded = decode_jpeg(encoded)
    return torch.stack(decoded).to(device=x.device, dtype=x.dtype) / 255.0
