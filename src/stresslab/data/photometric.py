"""Photometric augmentation on whole float batches: brightness, contrast, blur and noise.

The training-side match of the corruptions an image-quality failure or a corruption weakness
points at (``stresslab suggest`` picks the one that fits): each image gets its own random
strength, drawn from a seeded generator, with no Python loop over images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from stresslab.data.color import adjust_brightness, grayscale
from stresslab.data.simclr_augment import gaussian_blur
from stresslab.errors import ConfigError

#: The smallest blur a blurred image gets, in pixels (sigma is uniform in [this, blur_sigma]).
MIN_BLUR_SIGMA = 0.1


def _contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with its mean luma (grayscale: its mean): ``f x + (1 - f) mean``, clipped."""
    luma = grayscale(x) if x.shape[1] == 3 else x.mean(dim=1, keepdim=True)
    mean = luma.mean(dim=(1, 2, 3), keepdim=True)
    f = factor.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
    return (f * x + (1.0 - f) * mean).clamp(0.0, 1.0)


@dataclass(frozen=True)
class PhotometricAugment:
    """Random brightness, contrast, blur and noise, per image, batched, in that order.

    Per image: a brightness factor uniform in ``[1 - brightness, 1 + brightness]`` (pixels
    multiplied, as torchvision's ``adjust_brightness``); a contrast factor uniform in
    ``[1 - contrast, 1 + contrast]`` (blend with the image's mean luma, as torchvision's
    ``adjust_contrast``); with probability ``blur_prob`` a Gaussian blur with sigma uniform in
    ``[0.1, blur_sigma]`` pixels (kernel ``2 ceil(3 blur_sigma) + 1``, at most the image
    size, reflected borders); Gaussian noise whose standard deviation is uniform in
    ``[0, noise_std]`` (pixel units of [0, 1]). The result is clipped to [0, 1].

    Random numbers come from ``generator`` on its own device, drawn for the parts that are on
    in the order brightness, contrast, blur (whether, sigma), noise (std, values), so a seed
    fixes the result; only per-image parameters and the noise move between devices.

    Args:
        brightness: in [0, 1]; 0 turns it off.
        contrast: in [0, 1]; 0 turns it off.
        blur_prob: probability in [0, 1]; 0 turns blur off.
        blur_sigma: largest blur in pixels, >= 0.1.
        noise_std: largest noise standard deviation, in [0, 1]; 0 turns it off.
    """

    brightness: float = 0.0
    contrast: float = 0.0
    blur_prob: float = 0.0
    blur_sigma: float = 1.5
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "blur_prob", "noise_std"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ConfigError(f"{name} must be in [0, 1], got {v!r}")
        if not (math.isfinite(self.blur_sigma) and self.blur_sigma >= MIN_BLUR_SIGMA):
            raise ConfigError(f"blur_sigma must be >= {MIN_BLUR_SIGMA} pixels, got {self.blur_sigma!r}")

    @property
    def enabled(self) -> bool:
        """False when every part is off (calling returns the batch unchanged)."""
        return self.brightness > 0 or self.contrast > 0 or self.blur_prob > 0 or self.noise_std > 0

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a float batch (N, C, H, W) in [0, 1]; returns a new batch in [0, 1]."""
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(
                f"PhotometricAugment expects a float batch (N, C, H, W), got {x.dtype} {tuple(x.shape)}"
            )
        if not self.enabled or len(x) == 0:
            return x
        n, _, h, w = x.shape
        dev = generator.device if generator is not None else torch.device("cpu")

        def uniform(lo: float, hi: float) -> Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=generator, device=dev)

        if self.brightness > 0:
            x = adjust_brightness(x, uniform(1 - self.brightness, 1 + self.brightness))
        if self.contrast > 0:
            x = _contrast(x, uniform(1 - self.contrast, 1 + self.contrast))
        kernel = min(2 * math.ceil(3 * self.blur_sigma) + 1, 2 * ((min(h, w) - 1) // 2) + 1)
        if self.blur_prob > 0:
            do_blur = (uniform(0, 1) < self.blur_prob).to(x.device).view(-1, 1, 1, 1)
            sigma = uniform(MIN_BLUR_SIGMA, self.blur_sigma)
            if kernel > 1:
                x = torch.where(do_blur, gaussian_blur(x, sigma, kernel), x)
        if self.noise_std > 0:
            std = uniform(0.0, self.noise_std).to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
            noise = torch.randn(x.shape, generator=generator, device=dev).to(device=x.device, dtype=x.dtype)
            x = (x + std * noise).clamp(0.0, 1.0)
        return x
