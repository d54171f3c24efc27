"""Max-sensitivity of an explanation (Yeh et al., "On the (In)fidelity and Sensitivity of
Explanations", NeurIPS 2019): how much a map changes under small input noise.

For each image, ``samples`` perturbed copies ``x + d`` with ``d`` uniform in [-r, r] per pixel
and channel are explained for the same class, and the score is the largest relative change
``max_d ||map(x + d) - map(x)||_F / ||map(x)||_F`` (Quantus's ``MaxSensitivity`` with its
default difference and Frobenius norms). Lower is more robust; 0 for a map that does not move.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution
from stresslab.devices import model_device

CPU_BATCH = 64
"""Passes per chunk for a gradient method on the CPU, whatever the caller's ``batch_size``:
there the noisy copies' gradients ran faster in small batches (one thread, saliency of 512
noisy 28x28 images on ``custom_cnn``: 0.80 s of CPU in chunks of 64, 1.51 s in one batch of
512; the activations of a large batch do not stay in cache)."""


def uniform_noise(
    shape: tuple[int, ...], samples: int, radius: float, generator: torch.Generator | None
) -> Tensor:
    """Noise (samples, *shape) uniform in [-radius, radius], float32, drawn on the CPU."""
    return (torch.rand((samples, *shape), generator=generator) * 2 - 1) * radius


def max_sensitivity(
    method: Attribution,
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    maps: Tensor,
    *,
    radius: float = 0.05,
    samples: int = 8,
    clip: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
) -> Tensor:
    """Max-sensitivity (N,) float64 of ``method``'s ``maps`` (N, H, W) of ``model`` for images
    ``x`` (N, C, H, W) in [0, 1] and classes ``target`` (N,).

    ``radius`` is in pixel units; the perturbed images are clipped to [0, 1] when ``clip``
    (Quantus does not clip). All ``samples`` x N perturbed images are explained by one
    :meth:`Attribution.attribute` call, ``batch_size`` passes per chunk (at most
    :data:`CPU_BATCH` for a gradient method when the model is on the CPU). The noise comes
    first from ``generator`` (``samples`` draws of x's shape, :func:`uniform_noise`); a
    stochastic method then draws its own noise from the same generator. NaN where a map is all
    zeros (its norm is the denominator).
    """
    if radius <= 0 or samples < 1:
        raise ValueError(f"radius must be > 0 and samples >= 1, got {radius} and {samples}")
    n = x.shape[0]
    if maps.shape != (n, x.shape[2], x.shape[3]) or target.shape != (n,):
        raise ValueError(f"maps must be (N, H, W) and target (N,) for x {tuple(x.shape)}")
    xc = x.detach().cpu().float()
    noisy = xc[None] + uniform_noise(tuple(xc.shape), samples, radius, generator)
    if clip:
        noisy = noisy.clamp(0.0, 1.0)
    flat = noisy.reshape(samples * n, *xc.shape[1:])
    if method.gradient_based and model_device(model).type == "cpu":
        batch_size = min(batch_size, CPU_BATCH)
    moved = method.attribute(
        model, flat, target.repeat(samples), batch_size=batch_size, generator=generator
    ).view(samples, n, -1)
    base = maps.detach().cpu().flatten(1).double()
    norm = base.norm(dim=1)
    change = (moved.double() - base[None]).norm(dim=2) / torch.where(norm > 0, norm, 1.0)[None]
    return torch.where(norm > 0, change.amax(dim=0), torch.full_like(norm, float("nan")))
