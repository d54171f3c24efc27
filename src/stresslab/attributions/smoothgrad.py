"""SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution, register_attribution
from stresslab.attributions.saliency import input_gradient


@register_attribution("smoothgrad")
class SmoothGrad(Attribution):
    """Mean of ``|d y_c / d x|`` over ``samples`` copies of x plus Gaussian noise.

    The noise has standard deviation ``noise`` in pixel units of [0, 1] images (0.15 is
    Smilkov et al.'s 15% of the input range). All noisy copies of a chunk go through one
    batched backward pass. Given the same noise, equal to Captum's
    ``NoiseTunnel(Saliency(abs=True))`` with ``nt_type="smoothgrad"``.
    """

    label: ClassVar[str] = "SmoothGrad"
    options: ClassVar[tuple[str, ...]] = ("samples", "noise")
    stochastic: ClassVar[bool] = True

    def __init__(self, samples: int = 20, noise: float = 0.15) -> None:
        if samples < 1:
            raise ValueError("smoothgrad samples must be >= 1")
        if noise < 0:
            raise ValueError("smoothgrad noise must be >= 0")
        self.samples = samples
        self.noise = noise

    @property
    def cost(self) -> int:
        return self.samples

    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        shape = (x.shape[0] * self.samples, *x.shape[1:])
        noise = torch.randn(shape, generator=generator) * self.noise
        return self.with_noise(model, x, target, noise.to(x.device))

    def with_noise(self, model: nn.Module, x: Tensor, target: Tensor, noise: Tensor) -> Tensor:
        """SmoothGrad with given noise (n * samples, C, H, W), ordered image by image
        (copy j of image i at row ``i * samples + j``) -> (n, C, H, W)."""
        noisy = x.repeat_interleave(self.samples, dim=0) + noise
        grad = input_gradient(model, noisy, target.repeat_interleave(self.samples)).abs()
        return grad.view(x.shape[0], self.samples, *x.shape[1:]).mean(dim=1)
