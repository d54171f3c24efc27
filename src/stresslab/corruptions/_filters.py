"""Batched filters and resamplers shared by the corruptions (all torch, on the images' device).

Border modes follow the names of ``scipy.ndimage``: ``nearest`` repeats the edge pixel,
``reflect`` mirrors about the edge (d c b a | a b c d), ``mirror`` mirrors about the edge
pixel's centre (d c b | a b c d, OpenCV's default BORDER_REFLECT_101). Padding is done by
index arithmetic, so a pad may be wider than the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


def border_index(n: int, pad: int, mode: str, device: torch.device) -> Tensor:
    """Source indices (n + 2 * pad,) into an axis of length ``n`` padded by ``pad`` on both sides."""
    i = torch.arange(-pad, n + pad, device=device)
    if mode == "nearest" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect":
        j = i.remainder(2 * n)
        return torch.where(j >= n, 2 * n - 1 - j, j)
    if mode == "mirror":
        j = i.remainder(2 * n - 2)
        return torch.where(j >= n, 2 * n - 2 - j, j)
    raise ValueError(f"unknown border mode {mode!r}")


def pad2d(x: Tensor, pad_h: int, pad_w: int, mode: str) -> Tensor:
    """Pad the last two axes of ``x`` (..., H, W) by ``pad_h`` rows and ``pad_w`` columns per side."""
    h, w = x.shape[-2:]
    # F.pad is an order of magnitude faster than gathering on the CPU; it covers the usual case.
    if mode == "nearest" and x.ndim == 4:
        return F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="replicate")
    if mode == "mirror" and x.ndim == 4 and pad_h < h and pad_w < w:
        return F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    if pad_h:
        x = x[..., border_index(h, pad_h, mode, x.device), :]
    if pad_w:
        x = x[..., border_index(w, pad_w, mode, x.device)]
    return x


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> Tensor:
    """Normalized 1-D Gaussian taps (2r + 1,), r = int(truncate * sigma + 0.5), as in scipy.ndimage."""
    radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 0 or radius == 0:
        return torch.ones(1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


@lru_cache(maxsize=128)
def filter_matrix(n: int, taps: tuple[float, ...], mode: str, device: str = "cpu") -> Tensor:
    """(n, n) matrix applying the odd-length correlation ``taps`` along an axis of length ``n``,
    borders handled by ``mode``: row i holds taps[t] at column border(i + t - r)."""
    r = len(taps) // 2
    src = border_index(n, r, mode, torch.device("cpu"))
    m = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for t, wt in enumerate(taps):
            m[i, src[i + t]] += wt
    return m.float().to(device)


def separable_filter(x: Tensor, taps: Tensor, mode: str) -> Tensor:
    """Correlate each channel of ``x`` (N, C, H, W) with ``taps`` (odd length) along H and W.

    Done as My @ x @ Mx^T with banded (H, H) and (W, W) matrices: the border handling is
    exact for any pad width and BLAS beats a depthwise convolution on small images.
    """
    k = taps.numel()
    if k == 1:
        return x * float(taps[0])
    t = tuple(float(v) for v in taps)
    my = filter_matrix(x.shape[-2], t, mode, str(x.device)).to(x.dtype)
    mx = filter_matrix(x.shape[-1], t, mode, str(x.device)).to(x.dtype)
    return torch.matmul(torch.matmul(my, x), mx.T)


def gaussian_blur(x: Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """``scipy.ndimage.gaussian_filter`` over H and W of ``x`` (N, C, H, W); sigma in pixels."""
    return separable_filter(x, gaussian_kernel1d(sigma, truncate), mode)


def filter2d(x: Tensor, kernel: Tensor, mode: str = "mirror") -> Tensor:
    """Correlate each channel of ``x`` (N, C, H, W) with one odd-sized 2-D ``kernel`` (kh, kw)."""
    kh, kw = kernel.shape
    c = x.shape[1]
    padded = pad2d(x, kh // 2, kw // 2, mode)
    weight = kernel.to(x).view(1, 1, kh, kw).expand(c, 1, kh, kw).contiguous()
    return F.conv2d(padded, weight, groups=c)


def zoom_center(x: Tensor, factor: float) -> Tensor:
    """Zoom into the centre of ``x`` (N, C, H, W) by ``factor`` >= 1, keeping the size (bilinear).

    Output pixel p samples the input at c + (p - c) / factor, c the image centre: the
    ``clipped_zoom`` of Hendrycks & Dietterich (2019) done as one resampling.
    """
    if factor == 1.0:
        return x
    n = x.shape[0]
    theta = torch.tensor([[1.0 / factor, 0.0, 0.0], [0.0, 1.0 / factor, 0.0]], device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _zoom_taps(size: int, factors: Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
    """Bilinear centre-zoom taps along one axis: ``lo``, ``hi`` (F, size) source indices and the
    weight ``frac`` (F, size) of ``hi``; output p reads the input at c + (p - c) / f, clamped."""
    f = torch.tensor(list(factors), dtype=torch.float64).view(-1, 1)
    c = (size - 1) / 2.0
    src = (c + (torch.arange(size, dtype=torch.float64) - c) / f).clamp(0, size - 1)
    lo = src.floor().long().clamp(max=size - 1)
    return lo, (lo + 1).clamp(max=size - 1), src - lo


@lru_cache(maxsize=32)
def zoom_sum_operator(h: int, w: int, factors: tuple[float, ...], device: str = "cpu") -> Tensor:
    """Sparse (H*W, H*W) matrix of the sum over ``factors`` of centre zooms on flattened images.

    A centre zoom is separable, Ry (x) Rx, with two taps per axis, so four per output pixel;
    the zooms of one severity overlap so much that their sum keeps only about 8 non-zeros per
    row (at 32 px), so one sparse product replaces many resamplings.
    """
    ylo, yhi, yf = _zoom_taps(h, factors)
    xlo, xhi, xf = _zoom_taps(w, factors)
    out_index = torch.arange(h * w).view(1, h, w)
    rows, cols, vals = [], [], []
    for ys, yw in ((ylo, 1 - yf), (yhi, yf)):
        for xs, xw in ((xlo, 1 - xf), (xhi, xf)):
            src = ys.view(-1, h, 1) * w + xs.view(-1, 1, w)  # (F, H, W)
            rows.append(out_index.expand_as(src).reshape(-1))
            cols.append(src.reshape(-1))
            vals.append((yw.view(-1, h, 1) * xw.view(-1, 1, w)).reshape(-1))
    op = torch.sparse_coo_tensor(
        torch.stack([torch.cat(rows), torch.cat(cols)]),
        torch.cat(vals),
        (h * w, h * w),
        check_invariants=False,
    ).coalesce()
    return op.float().to(device)


def zoom_sum(x: Tensor, factors: Sequence[float]) -> Tensor:
    """Sum over ``factors`` (each >= 1) of bilinear centre zooms of ``x`` (N, C, H, W)."""
    n, c, h, w = x.shape
    op = zoom_sum_operator(h, w, tuple(float(f) for f in factors), str(x.device))
    flat = x.reshape(n * c, h * w)
    return torch.sparse.mm(op, flat.T.contiguous()).T.reshape(n, c, h, w)


def motion_blur(x: Tensor, radius: float, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick's ``-motion-blur radius x sigma + angle`` on ``x`` (N, C, H, W), one angle per image.

    The kernel is one-sided: tap i = 0 .. 2 * ceil(radius) has weight exp(-i^2 / (2 sigma^2))
    (normalized) and reads the pixel at integer offset (ceil(i cos a - 0.5), ceil(i sin a - 0.5))
    in (x, y), with edge pixels repeated past the border. ``angles`` (N,) in degrees. Taps
    below 1e-4 of the first weigh nothing visible and are skipped.
    """
    n, c, h, w = x.shape
    width = 2 * math.ceil(radius) + 1
    i = torch.arange(width, dtype=torch.float64)
    taps = torch.exp(-(i**2) / (2 * sigma**2))
    weights: list[float] = (taps / taps.sum()).tolist()
    rad = torch.deg2rad(angles.to(device=x.device, dtype=torch.float64))
    cos, sin = torch.cos(rad), torch.sin(rad)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    for k, wk in enumerate(weights):
        if wk < 1e-4 * weights[0]:
            break
        ox = torch.ceil(k * cos - 0.5).long().view(n, 1, 1)
        oy = torch.ceil(k * sin - 0.5).long().view(n, 1, 1)
        index = ((rows + oy).clamp(0, h - 1) * w + (cols + ox).clamp(0, w - 1)).view(n, 1, h * w)
        out += wk * flat.gather(2, index.expand(n, c, h * w))
    return out.view(n, c, h, w)


def to_gray(x: Tensor) -> Tensor:
    """Luma (N, 1, H, W) of RGB ``x`` (ITU-R 601 weights, as OpenCV's RGB2GRAY); gray passes through."""
    if x.shape[1] == 1:
        return x
    wts = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * wts).sum(dim=1, keepdim=True)
