"""SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution, register_attribution
from stresslab.attributions.saliency import input_gradient
from stresslab.devices import images_per_pass


@register_attribution("smoothgrad")
class SmoothGrad(Attribution):
    """Mean of ``|d y_c / d x|`` over ``samples`` copies of x plus Gaussian noise.

    The noise has standard deviation ``noise`` in pixel units of [0, 1] images (0.15 is
    Smilkov et al.'s 15% of the input range). The noisy copies of a chunk go through batched
    backward passes of at most ``GRADIENT_PIXELS`` input pixels. Given the same noise, equal to Captum's
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
        # A few images per backward pass (their copies hold at most GRADIENT_PIXELS pixels):
        # each image's copies are independent of the others', so the maps do not change.
        step = max(1, images_per_pass(x.shape[2], x.shape[3]) // self.samples)
        noise = noise.view(x.shape[0], self.samples, *x.shape[1:])
        out = []
        for i in range(0, x.shape[0], step):
            xb, nb = x[i : i + step], noise[i : i + step]
            noisy = (xb[:, None] + nb).flatten(0, 1)
            grad = input_gradient(model, noisy, target[i : i + step].repeat_interleave(self.samples)).abs()
            out.append(grad.view(xb.shape[0], self.samples, *x.shape[1:]).mean(dim=1))
        return torch.cat(out) if out else x.new_zeros(x.shape)
