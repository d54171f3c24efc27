"""PGD: iterated gradient steps projected onto the epsilon-ball (Madry et al., 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stresslab.attacks.base import (
    Attack,
    AttackOutput,
    LossName,
    Norm,
    attack_loss,
    check_epsilon,
    check_norm,
    clamp_to_box,
    project,
    random_start,
    steepest_ascent,
)
from stresslab.attacks.registry import register_attack
from stresslab.errors import ConfigError
from stresslab.scoped import inference_scope

# Madry et al. (2018) take steps of 2.5 * epsilon / steps: enough to cross the ball and back.
DEFAULT_STEP_RATIO = 2.5


def default_step_size(epsilon: float, steps: int) -> float:
    """``2.5 * epsilon / steps`` in pixel units (Madry et al., 2018)."""
    return DEFAULT_STEP_RATIO * epsilon / max(1, steps)


def _pgd_once(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    norm: Norm,
    loss: LossName,
    start: bool,
    early_stop: bool,
    final_logits: bool,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """One PGD run from one (random) start. Returns ``(adv, logits, final_loss)``.

    With ``early_stop`` an image leaves the batch at the first iterate the model
    misclassifies, and that iterate is kept: later steps can only be spent on images the
    attack has not broken yet, and a broken image is never "repaired" by a later step.
    ``logits`` (N, K) and ``final_loss`` (N,) are ``None`` unless ``final_logits``.
    """
    n = len(x)
    delta = random_start(x, epsilon, norm, generator) if start else torch.zeros_like(x)
    out_adv = x.detach().clone()
    out_logits: Tensor | None = None
    out_loss: Tensor | None = None
    active = torch.arange(n, device=x.device)
    xc, yc = x.detach(), y
    last = steps if (final_logits or early_stop) else steps - 1
    for step in range(last + 1):
        need_grad = step < steps
        with torch.set_grad_enabled(need_grad):
            d = delta.detach().requires_grad_(need_grad)
            adv = xc + d
            logits = model(adv)
            if final_logits and out_logits is None:
                out_logits = logits.new_zeros((n, logits.shape[1]))
                out_loss = logits.new_zeros((n,))
            keep: Tensor | None = None
            if early_stop and step < steps:
                hit = logits.detach().argmax(dim=1) != yc
                if bool(hit.any()):
                    idx = active[hit]
                    out_adv[idx] = adv.detach()[hit]
                    if out_logits is not None and out_loss is not None:
                        out_logits[idx] = logits.detach()[hit]
                        out_loss[idx] = attack_loss(logits.detach()[hit], yc[hit], loss)
                    keep = ~hit
            if not need_grad:
                out_adv[active] = adv.detach()
                if out_logits is not None and out_loss is not None:
                    out_logits[active] = logits.detach()
                    out_loss[active] = attack_loss(logits.detach(), yc, loss)
                break
            (grad,) = torch.autograd.grad(attack_loss(logits, yc, loss).sum(), d)
        delta = d.detach()
        if keep is not None:
            active, xc, yc, delta, grad = active[keep], xc[keep], yc[keep], delta[keep], grad[keep]
            if len(active) == 0:
                break
        delta = clamp_to_box(xc, project(delta + step_size * steepest_ascent(grad, norm), epsilon, norm))
        if step == steps - 1 and not final_logits and not early_stop:
            out_adv[active] = xc + delta
    return out_adv, out_logits, out_loss


def pgd_perturb(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epsilon: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_init: bool = True,
    loss: LossName = "ce",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The last PGD iterate (Madry et al., "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018), as used to make training examples.

    Images ``x`` (N, C, H, W) in [0, 1], labels ``y`` (N,); ``epsilon`` and ``step_size``
    (default ``2.5 * epsilon / steps``) in pixel units. Runs ``steps`` forward and backward
    passes and no extra forward pass; the model's mode is left alone and no parameter gets a
    gradient. Returns detached images in [0, 1] within ``epsilon`` of ``x``.
    """
    eps = check_epsilon(epsilon)
    if steps < 1 or eps == 0.0:
        return x.detach().clone()
    alpha = default_step_size(eps, steps) if step_size is None else float(step_size)
    with inference_scope(model, eval_mode=False):
        adv, _, _ = _pgd_once(
            model,
            x.detach(),
            y,
            epsilon=eps,
            step_size=alpha,
            steps=steps,
            norm=check_norm(norm),
            loss=loss,
            start=random_init,
            early_stop=False,
            final_logits=False,
            generator=generator,
        )
    return adv


@register_attack("pgd")
class PGD(Attack):
    """Projected Gradient Descent, L-inf or L2 (Madry et al., "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018), with random restarts.

    Each run starts at a random point of the ball (``random_start``), takes ``steps`` steps
    of ``step_size`` pixel units along the steepest-ascent direction of the loss (``sign``
    for L-inf, the normalized gradient for L2), and projects back onto the ball and [0, 1]
    after every step. ``step_size=None`` means ``2.5 * epsilon / steps``. A restart reruns
    the attack on the images no earlier run has broken. With ``early_stop`` (the default for
    evaluation) an image is kept at the first misclassified iterate; this never raises
    robust accuracy and saves the steps a broken image would waste.
    """

    title = "PGD"
    iterative = True
    convergence_settings = ("steps", "restarts")

    def __init__(
        self,
        *,
        norm: str = "linf",
        loss: str = "ce",
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        early_stop: bool = True,
    ) -> None:
        super().__init__(norm=norm, loss=loss)
        if steps < 1:
            raise ConfigError(f"pgd steps must be >= 1, got {steps}")
        if restarts < 1:
            raise ConfigError(f"pgd restarts must be >= 1, got {restarts}")
        if step_size is not None and not step_size > 0:
            raise ConfigError(f"pgd step_size must be > 0 (pixel units) or None, got {step_size}")
        self.steps = int(steps)
        self.step_size = None if step_size is None else float(step_size)
        self.random_start = bool(random_start)
        self.restarts = int(restarts)
        self.early_stop = bool(early_stop)

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        epsilon: float,
        *,
        generator: torch.Generator | None = None,
    ) -> AttackOutput:
        """Adversarial images (N, C, H, W) in [0, 1] within ``epsilon`` of ``x``, and their logits.

        Per image the result is the first run that fooled the model, else the run with the
        highest final loss.
        """
        eps = check_epsilon(epsilon)
        x = x.detach()
        with inference_scope(model, eval_mode=False):
            if eps == 0.0 or len(x) == 0:
                with torch.no_grad():
                    return AttackOutput(images=x.clone(), logits=model(x).detach())
            alpha = default_step_size(eps, self.steps) if self.step_size is None else self.step_size
            best_adv = x.clone()
            best_logits: Tensor | None = None
            best_loss = torch.full((len(x),), float("-inf"), device=x.device)
            fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
            for _ in range(self.restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if len(todo) == 0:
                    break
                adv, logits, loss = _pgd_once(
                    model,
                    x[todo],
                    y[todo],
                    epsilon=eps,
                    step_size=alpha,
                    steps=self.steps,
                    norm=self.norm,
                    loss=self.loss,
                    start=self.random_start,
                    early_stop=self.early_stop,
                    final_logits=True,
                    generator=generator,
                )
                assert logits is not None and loss is not None
                if best_logits is None:
                    best_logits = logits.new_zeros((len(x), logits.shape[1]))
                hit = logits.argmax(dim=1) != y[todo]
                better = hit | (loss > best_loss[todo])
                idx = todo[better]
                best_adv[idx] = adv[better]
                best_logits[idx] = logits[better]
                best_loss[idx] = loss[better]
                fooled[todo[hit]] = True
            assert best_logits is not None
        return AttackOutput(images=best_adv, logits=best_logits)
