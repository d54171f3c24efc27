"""Random erasing on whole batches (Zhong et al., "Random Erasing Data Augmentation",
AAAI 2020): per image, with probability ``prob``, a box of random area and aspect ratio is
filled with a constant or with noise. Batched: one mask per image, no Python loop."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from stresslab.errors import ConfigError


@dataclass(frozen=True)
class RandomErasing:
    """Erase one box per image with probability ``prob``.

    The box covers a share of the image area drawn uniformly from ``scale`` and has an
    aspect ratio (height / width) drawn log-uniformly from ``ratio``; its sides are rounded
    to whole pixels and clipped to the image (one draw per image, where torchvision retries
    up to 10 times), and its position is uniform over the places where it fits.

    Args:
        prob: probability in [0, 1] that an image is erased.
        scale: (min, max) share of the image area, in (0, 1].
        ratio: (min, max) aspect ratio, > 0.
        value: fill in [0, 1] (pixel units of [0, 1] images), or ``"random"`` for uniform
            noise in [0, 1] per pixel and channel.
    """

    prob: float = 0.0
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float | str = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ConfigError(f"erasing_prob must be in [0, 1], got {self.prob!r}")
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"erasing_scale must satisfy 0 < min <= max <= 1, got {self.scale!r}")
        rlo, rhi = self.ratio
        if not 0.0 < rlo <= rhi:
            raise ConfigError(f"erasing_ratio must satisfy 0 < min <= max, got {self.ratio!r}")
        if isinstance(self.value, str):
            if self.value != "random":
                raise ConfigError(f"erasing_value must be a number in [0, 1] or 'random', got {self.value!r}")
        elif not 0.0 <= float(self.value) <= 1.0:
            raise ConfigError(f"erasing_value must be in [0, 1], got {self.value!r}")

    @property
    def enabled(self) -> bool:
        return self.prob > 0

    def boxes(self, n: int, height: int, width: int, generator: torch.Generator | None) -> Tensor:
        """Per-image ``(apply, top, left, box_height, box_width)`` as an int64 tensor (n, 5)."""
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(5, n, generator=generator, device=device, dtype=torch.float64)
        apply = u[0] < self.prob
        area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[1])
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * u[2])
        bh = torch.sqrt(area * aspect).round().clamp(1, height).long()
        bw = torch.sqrt(area / aspect).round().clamp(1, width).long()
        top = (u[3] * (height - bh + 1)).floor().long().clamp_max(height - bh)
        left = (u[4] * (width - bw + 1)).floor().long().clamp_max(width - bw)
        return torch.stack([apply.long(), top, left, bh, bw], dim=1)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Erase boxes in a float batch (N, C, H, W); returns a new batch of the same shape."""
        if not self.enabled or len(x) == 0:
            return x
        n, _, h, w = x.shape
        b = self.boxes(n, h, w, generator).to(x.device)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        top, left, bh, bw = (b[:, i].view(n, 1, 1) for i in range(1, 5))
        mask = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
        mask = (mask & b[:, 0].bool().view(n, 1, 1)).unsqueeze(1)
        if self.value == "random":
            device = generator.device if generator is not None else torch.device("cpu")
            fill = torch.rand(x.shape, generator=generator, device=device).to(x.device, x.dtype)
        else:
            fill = torch.full((), float(self.value), dtype=x.dtype, device=x.device)
        return torch.where(mask, fill, x)
