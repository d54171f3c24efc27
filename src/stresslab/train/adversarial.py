"""Adversarial examples for adversarial training: FGSM with random start and PGD, L-inf."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stresslab.attacks.pgd import pgd_perturb
from stresslab.errors import ConfigError
from stresslab.scoped import inference_scope

METHODS: tuple[str, ...] = ("fgsm_rs", "pgd")

# Wong et al. (2020) found 1.25 * epsilon the best FGSM-RS step: larger steps lead to
# "catastrophic overfitting", smaller ones to a weaker attack.
FGSM_RS_STEP_RATIO = 1.25


def adversarial_examples(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    method: str,
    epsilon: float,
    steps: int = 7,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Adversarial versions of training images for one batch, L-inf, in pixel units.

    ``x``: float images (N, C, H, W) in [0, 1]; ``y``: labels (N,); ``epsilon``: the
    L-inf radius in [0, 1] pixel units.

    - ``"fgsm_rs"``: FGSM with a random start ("Fast is better than free: Revisiting
      adversarial training", Wong et al., ICLR 2020): a uniform draw in the epsilon-ball,
      one signed-gradient step of ``step_size`` (default ``1.25 * epsilon``), projection
      onto the ball and [0, 1]. ``steps`` is ignored.
    - ``"pgd"``: PGD with a random start (Madry et al., ICLR 2018): ``steps`` signed steps of
      ``step_size`` (default ``2.5 * epsilon / steps``), each projected.

    The model runs in the mode it is in (the training loop calls this in train mode, as
    Wong et al. do); its mode, parameter gradients and BatchNorm running statistics are left
    as they were. Random starts come from ``generator`` (any device). Returns detached
    images (N, C, H, W) in [0, 1] with ``|x_adv - x| <= epsilon`` per pixel.
    """
    if method not in METHODS:
        raise ConfigError(
            f"unknown adversarial training method {method!r}; choose one of {', '.join(METHODS)}"
        )
    if method == "fgsm_rs":
        steps = 1
        if step_size is None:
            step_size = FGSM_RS_STEP_RATIO * float(epsilon)
    elif steps < 1:
        raise ConfigError(f"adversarial training: pgd steps must be >= 1, got {steps}")
    # The attack's forward passes run in the model's current (train) mode, so each layer
    # normalizes with the statistics of the batch as in Wong et al.; restoring the buffers
    # afterwards means only the training step itself updates the BatchNorm running
    # averages, once per batch rather than once per attack step.
    with inference_scope(model, eval_mode=False, restore_buffers=True):
        adv = pgd_perturb(
            model,
            x,
            y,
            epsilon=epsilon,
            steps=steps,
            step_size=step_size,
            norm="linf",
            random_init=True,
            generator=generator,
        )
    return adv.detach()
