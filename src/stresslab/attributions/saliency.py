"""Vanilla gradient saliency (Simonyan et al., "Deep Inside Convolutional Networks:
Visualising Image Classification Models and Saliency Maps", ICLR workshop 2014)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from stresslab.attributions.base import Attribution, register_attribution


def input_gradient(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """d y_target / d x for images (n, C, H, W) -> (n, C, H, W); y is the target's logit."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), xg)
    return grad


@register_attribution("saliency")
class Saliency(Attribution):
    """``|d y_c / d x|``, maximum over channels (as in Simonyan et al.).

    Before the channel reduction equal to Captum's ``Saliency(abs=True)``.
    """

    label: ClassVar[str] = "saliency"

    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        return input_gradient(model, x, target).abs()
