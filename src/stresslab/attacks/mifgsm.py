"""MI-FGSM: iterated FGSM steps along a momentum of L1-normalized gradients (Dong et al., 2018)."""

from __future__ import annotations

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
from stresslab.errors import ConfigError
from stresslab.scoped import inference_scope

# Below this L1 norm a gradient counts as zero: it adds nothing to the momentum.
_TINY = 1e-12


@register_attack("mifgsm")
class MIFGSM(Attack):
    """Momentum Iterative FGSM, "Boosting Adversarial Attacks with Momentum" (Dong et al.,
    CVPR 2018), L-inf (the paper's Algorithm 1) and the L2 form the paper also gives.

    From ``x_0 = x`` and ``g_0 = 0``, each of ``steps`` steps takes the input gradient
    ``grad_t`` of the loss at ``x_t`` and sets, per image,
    ``g_{t+1} = decay * g_t + grad_t / ||grad_t||_1`` and
    ``x_{t+1} = clip(x_t + step_size * d(g_{t+1}))``, with ``d = sign`` (L-inf) or
    ``g / ||g||_2`` (L2) and ``clip`` the projection onto the epsilon-ball and [0, 1].
    ``step_size=None`` means ``epsilon / steps`` pixel units (the paper's ``alpha = eps / T``),
    so the steps add up to the radius; ``decay`` is the paper's ``mu`` (1.0 as in the paper;
    0 gives the basic iterative method). No random start: ``generator`` is unused.
    """

    title = "MI-FGSM"
    iterative = True
    convergence_settings = ("steps",)

    def __init__(
        self,
        *,
        norm: str = "linf",
        loss: str = "ce",
        steps: int = 10,
        step_size: float | None = None,
        decay: float = 1.0,
    ) -> None:
        super().__init__(norm=norm, loss=loss)
        if steps < 1:
            raise ConfigError(f"mifgsm steps must be >= 1, got {steps}")
        if step_size is not None and not step_size > 0:
            raise ConfigError(f"mifgsm step_size must be > 0 (pixel units) or None, got {step_size}")
        if not decay >= 0:
            raise ConfigError(f"mifgsm decay must be >= 0, got {decay}")
        self.steps = int(steps)
        self.step_size = None if step_size is None else float(step_size)
        self.decay = float(decay)

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        epsilon: float,
        *,
        generator: torch.Generator | None = None,
    ) -> AttackOutput:
        """Adversarial images (N, C, H, W) in [0, 1] within ``epsilon`` of ``x`` (the last
        iterate), and the model's logits (N, K) on them."""
        eps = check_epsilon(epsilon)
        x = x.detach()
        delta = torch.zeros_like(x)
        if eps > 0.0 and len(x):
            alpha = eps / self.steps if self.step_size is None else self.step_size
            momentum = torch.zeros_like(x)
            for _ in range(self.steps):
                grad, _ = input_gradient(model, x + delta, y, self.loss)
                l1 = grad.abs().flatten(1).sum(dim=1).clamp_min(_TINY)
                momentum = self.decay * momentum + grad / l1.view(-1, *([1] * (x.dim() - 1)))
                step = alpha * steepest_ascent(momentum, self.norm)
                delta = clamp_to_box(x, project(delta + step, eps, self.norm))
        adv = x + delta
        with torch.no_grad(), inference_scope(model, eval_mode=False):
            logits = model(adv)
        return AttackOutput(images=adv, logits=logits.detach())
