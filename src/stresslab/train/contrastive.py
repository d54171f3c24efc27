"""SimCLR's parts that are not data: the NT-Xent loss and the projection head.

Chen, Kornblith, Norouzi and Hinton (2020), "A Simple Framework for Contrastive Learning of
Visual Representations" (SimCLR), eq. (1) and section 2.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def nt_xent_logits(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Logits and targets of NT-Xent: each of the 2N views against the 2N - 1 others.

    Row ``i`` holds ``cos(z_i, z_j) / temperature`` for every view ``j`` (``-inf`` for ``j = i``);
    the target of view ``i`` of image ``n`` is the other view of the same image (``n + N`` for
    the first view, ``n`` for the second).

    Args:
        z1, z2: float (N, D), the projections of the two views of N images (row n of each is
            the same image); N >= 2 so that every view has a negative.
        temperature: tau > 0.

    Returns:
        ``(logits, targets)``: float (2N, 2N) and int64 (2N,).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = len(z1)
    if n < 2:
        raise ValueError("NT-Xent needs at least 2 images per batch (the other images are the negatives)")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = (z @ z.t()) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    ar = torch.arange(n, device=z.device)
    return logits, torch.cat([ar + n, ar])


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """The normalized temperature-scaled cross-entropy loss of SimCLR (eq. 1), a scalar.

    ``l(i, j) = -log( exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau) )`` with ``s`` the cosine
    similarity, averaged over all 2N anchors (both orders of every positive pair). In [0, inf);
    ``log(2N - 1)`` when all projections are equal. Shapes as in :func:`nt_xent_logits`.
    """
    logits, targets = nt_xent_logits(z1, z2, temperature)
    return F.cross_entropy(logits, targets)


class ProjectionHead(nn.Module):
    """The MLP ``g`` that SimCLR trains on top of the encoder and drops afterwards:
    Linear(D, hidden) -> BatchNorm -> ReLU -> Linear(hidden, out) -> BatchNorm, the linear
    layers without bias (as in SimCLR's released code and lightly's ``SimCLRProjectionHead``).
    Maps (N, D) -> (N, out); needs N >= 2 in training mode (BatchNorm)."""

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim or in_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_dim, bias=False),
            nn.BatchNorm1d(out_dim),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)  # type: ignore[no-any-return]
