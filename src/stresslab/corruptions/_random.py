"""Random draws from a caller's generator, delivered on the images' device.

Draws are made on the generator's own device (a CPU generator cannot fill a CUDA tensor)
and then moved, so a seed gives the same numbers whatever device the images are on.
"""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(
    shape: tuple[int, ...], low: float, high: float, generator: torch.Generator, device: torch.device
) -> Tensor:
    """float32 tensor of ``shape`` with values uniform in [low, high)."""
    u = torch.rand(shape, generator=generator, device=generator.device)
    return (u * (high - low) + low).to(device)


def normal(
    shape: tuple[int, ...], mean: float, std: float, generator: torch.Generator, device: torch.device
) -> Tensor:
    """float32 tensor of ``shape`` drawn from N(mean, std^2)."""
    z = torch.randn(shape, generator=generator, device=generator.device)
    return (z * std + mean).to(device)


def integers(
    shape: tuple[int, ...], low: int, high: int, generator: torch.Generator, device: torch.device
) -> Tensor:
    """int64 tensor of ``shape`` uniform over {low, ..., high - 1}."""
    return torch.randint(low, high, shape, generator=generator, device=generator.device).to(device)


def poisson(rates: Tensor, generator: torch.Generator) -> Tensor:
    """Poisson counts with the given (non-negative) ``rates``, on the rates' device."""
    out = torch.poisson(rates.to(generator.device), generator=generator)
    return out.to(rates.device)
