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
from stresslab.models.tokens import as_map, token_grid


def layer_activations_and_gradients(
    model: nn.Module, layer_name: str, x: Tensor, target: Tensor
) -> tuple[Tensor, Tensor]:
    """Activations ``A`` (n, K, h, w) of layer ``layer_name`` for images ``x`` (n, C, H, W)
    and ``d y_c / d A`` (same shape), ``y_c`` the logit of ``target`` (n,) per image.

    A vision transformer's layer gives a token sequence (n, L, D): its patch tokens are
    read as the (n, D, h, w) map of the model's patch grid, the class and other prefix tokens
    dropped (:func:`~stresslab.models.tokens.token_grid`), for activations and gradients alike.
    The backward pass stops at the layer: nothing before it is differentiated.
    """
    layer = get_layer(model, layer_name)
    grid = token_grid(model)
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, inputs: object, output: Tensor) -> Tensor:
        if as_map(output, grid) is None:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ConfigError(
                f"Grad-CAM needs a layer with (N, C, H, W) output (or a vision transformer's token "
                f"sequence); {layer_name} gives {shape}: pick a conv layer"
            )
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
    act_map, grad_map = as_map(act.detach(), grid), as_map(grad, grid)
    assert act_map is not None and grad_map is not None  # checked in the hook
    return act_map, grad_map


@register_attribution("gradcam")
class GradCam(Attribution):
    """``ReLU(sum_k alpha_k A^k)`` with ``alpha_k`` the spatial mean of d y_c / d A^k.

    ``A`` is the output (n, K, h, w) of ``layer`` (dotted name; the model's ``cam_layer``
    when ``None`` or empty; a vision transformer's token layer is read on its patch grid)
    and ``y_c`` the target's logit. The (h, w) map is upsampled
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
