"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017), batched in one forward and one short backward."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.errors import ConfigError
from stresslab.models.base import default_cam_layer, get_layer
from stresslab.probes.explain.base import ATTRIBUTIONS, Attribution


@ATTRIBUTIONS.register("gradcam")
class GradCam(Attribution):
    """``ReLU(sum_k alpha_k A^k)`` with ``alpha_k`` the spatial mean of d y_c / d A^k.

    ``A`` is the output (n, K, h, w) of ``layer`` (dotted name; the model's ``cam_layer``
    when ``None``) and ``y_c`` the target's logit. The (h, w) map is upsampled bilinearly
    to the image size. Equal to Captum's ``LayerGradCam(relu_attributions=True)``.
    """

    name: ClassVar[str] = "gradcam"
    label: ClassVar[str] = "Grad-CAM"

    def __init__(self, layer: str | None = None) -> None:
        self.layer = layer

    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        layer = get_layer(model, self.layer or default_cam_layer(model))
        store: dict[str, Tensor] = {}

        def hook(module: nn.Module, inputs: object, output: Tensor) -> Tensor:
            if not isinstance(output, Tensor) or output.ndim != 4:
                raise ConfigError("Grad-CAM needs a layer with (N, C, H, W) output; pick a conv layer")
            # A leaf here means the backward pass stops at this layer: nothing before it is
            # differentiated, which is most of the cost of a full backward.
            leaf = output.detach().requires_grad_(True)
            store["act"] = leaf
            # The clone keeps later in-place ops (ReLU(inplace=True)) off the leaf.
            return leaf.clone()

        handle = layer.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                logits = model(x)
        finally:
            handle.remove()
        if "act" not in store:
            raise ConfigError("the Grad-CAM layer was not used in the forward pass")
        act = store["act"]
        score = logits.gather(1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(score, act, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(act)
        alpha = grad.mean(dim=(2, 3), keepdim=True)
        return F.relu((alpha * act.detach()).sum(dim=1, keepdim=True))
