"""Mixup and CutMix on whole batches, with soft targets, on the batch's device.

Both mix each image with another image of the same batch (a seeded permutation) and mix
their one-hot labels by the same proportion, so the loss is a cross-entropy against soft
targets (rows sum to one; label smoothing is applied on top by ``F.cross_entropy``).

- Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018):
  ``x = lam * x_i + (1 - lam) * x_j``, ``lam ~ Beta(alpha, alpha)``, one ``lam`` per batch.
- CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features", ICCV 2019): a box of ``x_j`` is pasted into ``x_i``; the box has
  area ``(1 - lam) * H * W`` before clipping at the border, and the label weight is the
  exact share of pixels kept, ``1 - box_area / (H * W)``. One box per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.special import betaincinv
from torch import Tensor

from stresslab.errors import ConfigError


def one_hot(y: Tensor, num_classes: int) -> Tensor:
    """Labels (N,) int64 -> float32 one-hot targets (N, K)."""
    return F.one_hot(y.long(), num_classes).float()


def sample_beta(alpha: float, generator: torch.Generator | None) -> float:
    """One draw of ``Beta(alpha, alpha)`` in [0, 1] by inverting the CDF of a uniform draw
    from ``generator`` (torch's Beta sampler takes no generator)."""
    device = generator.device if generator is not None else torch.device("cpu")
    u = float(torch.rand(1, generator=generator, device=device).item())
    return float(betaincinv(alpha, alpha, u))


def mixup_batch(x: Tensor, targets: Tensor, lam: float, perm: Tensor) -> tuple[Tensor, Tensor]:
    """``lam * x + (1 - lam) * x[perm]`` for images (N, C, H, W) and soft targets (N, K)."""
    perm = perm.to(x.device)
    return lam * x + (1.0 - lam) * x[perm], lam * targets + (1.0 - lam) * targets[perm.to(targets.device)]


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator | None) -> tuple[int, ...]:
    """A box ``(top, left, bottom, right)`` (end-exclusive pixels) of side ratio
    ``sqrt(1 - lam)`` of the image, centred uniformly at random, clipped to the image."""
    device = generator.device if generator is not None else torch.device("cpu")
    cut = math.sqrt(1.0 - lam)
    bh, bw = int(height * cut), int(width * cut)
    cy = int(torch.randint(0, height, (1,), generator=generator, device=device).item())
    cx = int(torch.randint(0, width, (1,), generator=generator, device=device).item())
    top, bottom = max(cy - bh // 2, 0), min(cy + bh // 2, height)
    left, right = max(cx - bw // 2, 0), min(cx + bw // 2, width)
    return top, left, bottom, right


def cutmix_batch(
    x: Tensor, targets: Tensor, box: tuple[int, ...], perm: Tensor
) -> tuple[Tensor, Tensor, float]:
    """Paste ``x[perm]`` into ``box`` of every image; returns images, soft targets and the
    label weight ``lam = 1 - box_area / (H * W)`` of the original images."""
    top, left, bottom, right = box
    h, w = x.shape[-2:]
    perm = perm.to(x.device)
    out = x.clone()
    out[:, :, top:bottom, left:right] = x[perm][:, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / float(h * w)
    mixed = lam * targets + (1.0 - lam) * targets[perm.to(targets.device)]
    return out, mixed, lam


@dataclass(frozen=True)
class BatchMix:
    """Mixup and/or CutMix for a batch, with soft targets.

    Per batch: with ``cutmix_alpha > 0``, CutMix with probability ``cutmix_prob``; a batch
    not cut-mixed gets mixup when ``mixup_alpha > 0`` and is left as is otherwise.
    Random numbers come from ``generator`` in a fixed order (choice, lam, permutation,
    box), so a seed fixes the result; a few scalars per batch go to the host.

    Args:
        num_classes: K, the width of the targets.
        mixup_alpha: Beta parameter of mixup (0: off; 0.2 to 1 are usual).
        cutmix_alpha: Beta parameter of CutMix (0: off; the paper uses 1).
        cutmix_prob: probability in [0, 1] that a batch is cut-mixed.
    """

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    cutmix_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("mixup_alpha", "cutmix_alpha"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        if not 0.0 <= self.cutmix_prob <= 1.0:
            raise ConfigError(f"cutmix_prob must be in [0, 1], got {self.cutmix_prob!r}")
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}")

    @property
    def enabled(self) -> bool:
        """False when both mixup and CutMix are off."""
        return self.mixup_alpha > 0 or (self.cutmix_alpha > 0 and self.cutmix_prob > 0)

    def __call__(
        self, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Images (N, C, H, W) float and labels (N,) -> mixed images and targets (N, K)
        float32 whose rows sum to one."""
        targets = one_hot(y, self.num_classes).to(x.device)
        if not self.enabled or len(x) < 2:
            return x, targets
        device = generator.device if generator is not None else torch.device("cpu")
        use_cutmix = False
        if self.cutmix_alpha > 0:
            draw = float(torch.rand(1, generator=generator, device=device).item())
            use_cutmix = draw < self.cutmix_prob
        if not use_cutmix and self.mixup_alpha <= 0:
            return x, targets
        lam = sample_beta(self.cutmix_alpha if use_cutmix else self.mixup_alpha, generator)
        perm = torch.randperm(len(x), generator=generator, device=device)
        if use_cutmix:
            box = cutmix_box(x.shape[-2], x.shape[-1], lam, generator)
            out, mixed, _ = cutmix_batch(x, targets, box, perm)
            return out, mixed
        return mixup_batch(x, targets, lam, perm)
