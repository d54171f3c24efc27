"""SimCLR's random views, made for a whole batch at once on the batch's device.

Chen et al. (2020), "A Simple Framework for Contrastive Learning of Visual Representations",
appendix A: random resized crop with a horizontal flip, colour jitter, random grayscale and
Gaussian blur; here also optional Gaussian noise. Every image gets its own random
parameters; there is no Python loop over images (per-image PIL transforms in a DataLoader
are the slow path this replaces, see ``benchmarks/bench_representation.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stresslab.data.color import adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, grayscale
from stresslab.errors import ConfigError


def resized_crop_flip(x: Tensor, box: Tensor, flip: Tensor) -> Tensor:
    """Crop each image to its box and resize it back to H x W (bilinear), mirrored where ``flip``.

    Args:
        x: float (N, C, H, W).
        box: float (N, 4) as (centre x, centre y, width, height), fractions of the image in
            (0, 1]; the box must lie inside the image.
        flip: bool (N,).

    Returns:
        float (N, C, H, W). A box (0.5, 0.5, 1, 1) without flip returns ``x`` (up to rounding).
    """
    n = len(x)
    cx, cy, w, h = box.to(device=x.device, dtype=x.dtype).unbind(dim=1)
    sign = 1.0 - 2.0 * flip.to(device=x.device, dtype=x.dtype)
    zero = torch.zeros_like(w)
    # affine_grid maps output coordinates in [-1, 1] to input ones: x_in = +-w x_out + (2 cx - 1).
    theta = torch.stack(
        [torch.stack([sign * w, zero, 2 * cx - 1], dim=1), torch.stack([zero, h, 2 * cy - 1], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, [n, x.shape[1], x.shape[2], x.shape[3]], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blur each image with its own Gaussian (standard deviation ``sigma[n]`` pixels), separably,
    with reflected borders, as torchvision's ``gaussian_blur(img, [k, k], [s, s])``.

    Args:
        x: float (N, C, H, W); ``kernel_size`` odd and smaller than 2 H and 2 W.
        sigma: float (N,) > 0.
    """
    n, c, h, w = x.shape
    half = kernel_size // 2
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half
    s = sigma.to(device=x.device, dtype=x.dtype).view(n, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N C, k)
    flat = F.pad(x.reshape(1, n * c, h, w), (half, half, half, half), mode="reflect")
    flat = F.conv2d(flat, k.view(n * c, 1, 1, kernel_size), groups=n * c)
    flat = F.conv2d(flat, k.view(n * c, 1, kernel_size, 1), groups=n * c)
    return flat.view(n, c, h, w)


@dataclass(frozen=True)
class SimCLRAugment:
    """One random view per image of a float batch (N, C, H, W) in [0, 1].

    In order, each image independently: a random resized crop of ``crop_scale`` of its area
    (fractions) with aspect ratio (width / height) log-uniform in ``crop_ratio``, resized back
    (bilinear), mirrored with probability ``hflip``; on colour images only, with probability
    ``jitter`` a colour jitter of strength ``jitter_strength`` s (brightness, contrast and
    saturation factors uniform in [1 - 0.8 s, 1 + 0.8 s], hue shift uniform in [-0.2 s, 0.2 s]
    turns, applied in that order) and with probability ``grayscale`` a conversion to gray;
    with probability ``blur`` a Gaussian blur with sigma uniform in ``blur_sigma`` pixels
    (kernel 2 ceil(3 sigma_max) + 1, at most the image size); finally Gaussian noise of
    standard deviation ``noise_std`` (pixel units of [0, 1]), clipped to [0, 1].

    Random numbers come from ``generator`` on its own device, drawn in a fixed order, so a
    seed fixes the views.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    jitter: float = 0.8
    jitter_strength: float = 0.5
    grayscale: float = 0.2
    blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(
                f"crop_scale must satisfy 0 < min <= max <= 1 (area fractions), got {self.crop_scale}"
            )
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ConfigError(f"crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}")
        for name in ("hflip", "jitter", "grayscale", "blur"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.jitter_strength <= 1.25:
            raise ConfigError(f"jitter_strength must be in [0, 1.25], got {self.jitter_strength}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ConfigError(f"blur_sigma must satisfy 0 < min <= max (pixels), got {self.blur_sigma}")
        if self.noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {self.noise_std}")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A view of each image: float (N, C, H, W) in [0, 1] -> same shape, in [0, 1]."""
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(
                f"SimCLRAugment expects a float batch (N, C, H, W), got {x.dtype} {tuple(x.shape)}"
            )
        n, c, h, w = x.shape
        dev = generator.device if generator is not None else torch.device("cpu")

        def uniform(lo: float, hi: float, size: int = n) -> Tensor:
            return lo + (hi - lo) * torch.rand(size, generator=generator, device=dev)

        # Every draw happens whether or not its part is on for this batch, so the stream of
        # random numbers (and so a seeded run) does not depend on the image type.
        area = uniform(*self.crop_scale)
        ratio = torch.exp(uniform(math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])))
        bw, bh = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)
        cx, cy = bw / 2 + (1 - bw) * uniform(0, 1), bh / 2 + (1 - bh) * uniform(0, 1)
        flip = uniform(0, 1) < self.hflip
        s = self.jitter_strength
        do_jitter = uniform(0, 1) < self.jitter
        factors = [uniform(1 - 0.8 * s, 1 + 0.8 * s) for _ in range(3)]
        hue = uniform(-0.2 * s, 0.2 * s)
        do_gray = uniform(0, 1) < self.grayscale
        do_blur = uniform(0, 1) < self.blur
        sigma = uniform(*self.blur_sigma)
        noise = (
            torch.randn(x.shape, generator=generator, device=dev).to(x.device) if self.noise_std > 0 else None
        )

        x = resized_crop_flip(x, torch.stack([cx, cy, bw, bh], dim=1), flip)
        if c == 3:
            jittered = adjust_saturation(
                adjust_contrast(adjust_brightness(x, factors[0]), factors[1]), factors[2]
            )
            jittered = adjust_hue(jittered, hue)
            x = torch.where(do_jitter.to(x.device).view(-1, 1, 1, 1), jittered, x)
            x = torch.where(do_gray.to(x.device).view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)
        kernel = min(2 * math.ceil(3 * self.blur_sigma[1]) + 1, 2 * ((min(h, w) - 1) // 2) + 1)
        if self.blur > 0 and kernel > 1:
            x = torch.where(do_blur.to(x.device).view(-1, 1, 1, 1), gaussian_blur(x, sigma, kernel), x)
        if noise is not None:
            x = (x + self.noise_std * noise).clamp(0.0, 1.0)
        return x
