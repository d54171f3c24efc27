"""Grad-CAM++ (Chattopadhyay et al., "Grad-CAM++: Generalized Gradient-based Visual
Explanations for Deep Convolutional Networks", WACV 2018)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from stresslab.attributions.base import register_attribution
from stresslab.attributions.gradcam import GradCam

EPS = 1e-6  # keeps the denominator of alpha off zero, as pytorch-grad-cam does


@register_attribution("gradcam_plus_plus")
class GradCamPlusPlus(GradCam):
    """Grad-CAM with each gradient weighted by its share of the channel's evidence:

    ``w_k = sum_ij alpha^k_ij ReLU(g^k_ij)``, ``alpha^k_ij = g^2 / (2 g^2 + sum_ab A^k_ab g^3)``
    (0 where ``g = 0``), with ``g = d y_c / d A^k_ij`` the gradient of the target's logit and
    ``A`` the layer's activations (n, K, h, w). This is the paper's eq. 19 for the score
    ``exp(y_c)``, whose 2nd and 3rd derivatives are powers of the 1st for a piecewise-linear
    network, so only first-order gradients are needed. Map: ``ReLU(sum_k w_k A^k)``,
    upsampled bilinearly. Equal to pytorch-grad-cam's ``GradCAMPlusPlus`` before its
    min-max scaling.
    """

    label: ClassVar[str] = "Grad-CAM++"

    def channel_weights(self, act: Tensor, grad: Tensor) -> Tensor:
        g2 = grad.pow(2)
        total = act.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + total * g2 * grad + EPS)
        alpha = alpha.where(grad != 0, alpha.new_zeros(()))
        return (alpha * grad.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
