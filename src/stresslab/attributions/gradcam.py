"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017), batched in one forward and one short backward."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stresslab.attributions.base import Attribution, register_attribution
from stresslab.data.base import DatasetInfo
from stresslab.errors import ConfigError
from stresslab.models.base import default_cam_layer, get_layer


def layer_activations_and_gradients(
    model: nn.Module, layer_name: str, x: Tensor, target: Tensor
) -> tuple[Tensor, Tensor]:
    """Activations ``A`` (n, K, h, w) of layer ``layer_name`` for images ``x`` (n, C, H, W)
    and ``d y_c / d A`` (same shape), ``y_c`` the logit of ``target`` (n,) per image.

    The backward pass stops at the layer: nothing before it is differentiated.
    """
    layer = get_layer(model, layer_name)
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
    return act.detach(), grad


@register_attribution("gradcam")
class GradCam(Attribution):
    """``ReLU(sum_k alpha_k A^k)`` with ``alpha_k`` the spatial mean of d y_c / d A^k.

    ``A`` is the output (n, K, h, w) of ``layer`` (dotted name; the model's ``cam_layer``
    when ``None`` or empty) and ``y_c`` the target's logit. The (h, w) map is upsampled
    bilinearly to the image size. Equal to Captum's ``LayerGradCam(relu_attributions=True)``.
    A CAM variant overrides :meth:`channel_weights` only.
    """

    label: ClassVar[str] = "Grad-CAM"
    options: ClassVar[tuple[str, ...]] = ("layer",)
    needs_conv_layer: ClassVar[bool] = True
    has_true_class_variant: ClassVar[bool] = True

    def __init__(self, layer: str | None = None) -> None:
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"layer must be a dotted module name, got {layer!r}")
        self.layer = layer or None

    def prepare(self, model: nn.Module, info: DatasetInfo) -> tuple[Attribution, list[str]]:
        """Resolve the layer: the model's ``cam_layer`` (or last conv) when none is named."""
        return self.with_changes(layer=self.layer or default_cam_layer(model)), []

    def channel_weights(self, act: Tensor, grad: Tensor) -> Tensor:
        """Per-channel weights (n, K, 1, 1) from activations and gradients (n, K, h, w)."""
        return grad.mean(dim=(2, 3), keepdim=True)

    def _attribute(
        self, model: nn.Module, x: Tensor, target: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        act, grad = layer_activations_and_gradients(model, self.layer or default_cam_layer(model), x, target)
        return F.relu((self.channel_weights(act, grad) * act).sum(dim=1, keepdim=True))
