"""FGSM: one gradient step to the edge of the epsilon-ball (Goodfellow et al., 2015)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from stresslab.attacks.base import (
    Attack,
    AttackOutput,
    check_epsilon,
    clamp_to_box,
    input_gradient,
    project,
    steepest_ascent,
)
from stresslab.attacks.registry import register_attack


@register_attack("fgsm")
class FGSM(Attack):
    """Fast Gradient Sign Method, "Explaining and Harnessing Adversarial Examples"
    (Goodfellow et al., ICLR 2015), and its L2 form, the fast gradient method.

    ``x_adv = clip_[0,1](x + epsilon * d)`` with ``d = sign(grad)`` (L-inf) or
    ``d = grad / ||grad||_2`` (L2), ``grad`` the input gradient of the loss at ``x``.
    The gradient does not depend on epsilon, so :meth:`sweep` takes it once for all
    epsilons. Images whose gradient is exactly zero are not moved.
    """

    title = "FGSM"
    shares_gradient = True

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        epsilon: float,
        *,
        generator: torch.Generator | None = None,
    ) -> AttackOutput:
        """Adversarial images (N, C, H, W) in [0, 1] within ``epsilon`` of ``x``, and their logits."""
        return self.sweep(model, x, y, [epsilon], generator=generator)[0]

    def sweep(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        epsilons: Sequence[float],
        *,
        generator: torch.Generator | None = None,
    ) -> list[AttackOutput]:
        """One output per epsilon from a single input gradient (``generator`` is unused)."""
        eps = [check_epsilon(e) for e in epsilons]
        grad, clean_logits = input_gradient(model, x, y, self.loss)
        direction = steepest_ascent(grad, self.norm)
        outs = []
        with torch.no_grad():
            for e in eps:
                if e == 0.0:
                    # The clean forward pass already gave these logits.
                    outs.append(AttackOutput(images=x.detach().clone(), logits=clean_logits))
                    continue
                delta = clamp_to_box(x, project(direction * e, e, self.norm))
                adv = (x + delta).detach()
                outs.append(AttackOutput(images=adv, logits=model(adv).detach()))
        return outs
