"""Localisation of attribution maps where the truth is known (a mask of the object, a planted
patch's box): relevance mass accuracy and relevance rank accuracy (Arras et al., "CLEVR-XAI:
A benchmark dataset for the ground truth evaluation of neural network explanations",
Information Fusion 2022), as Quantus's ``RelevanceMassAccuracy`` and ``RelevanceRankAccuracy``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _check(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    if maps.ndim != 3 or masks.shape != maps.shape:
        raise ValueError(
            "maps must be (N, H, W) and masks the same shape; "
            f"got {tuple(maps.shape)} and {tuple(masks.shape)}"
        )
    return maps.detach().flatten(1).double().cpu(), masks.detach().flatten(1).bool().cpu()


def relevance_mass_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's attribution that lies inside its mask: ``sum(map * mask) / sum(map)``.

    ``maps`` (N, H, W) as given (pass ``maps.clamp(min=0)`` for the positive evidence only, as
    the explain probe does; a signed map's ratio can leave [0, 1]); ``masks`` (N, H, W) bool.
    Returns (N,) float64, in [0, 1] for non-negative maps; NaN where the mask is empty or the
    map sums to 0. A map that is uniform scores the mask's area share.
    """
    a, s = _check(maps, masks)
    total = a.sum(1)
    inside = (a * s).sum(1)
    ok = (s.sum(1) > 0) & (total != 0)
    nan = torch.full_like(total, float("nan"))
    return torch.where(ok, inside / torch.where(total != 0, total, torch.ones_like(total)), nan)


def relevance_rank_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of a map's K highest-ranked pixels that lie inside its mask, K = the mask's size.

    ``maps`` (N, H, W), ``masks`` (N, H, W) bool -> (N,) float64 in [0, 1]; NaN where the
    mask is empty or the map is constant (it ranks nothing). Other ties are broken in raster
    order (a stable sort; Quantus's ``argsort`` leaves their order unspecified).
    """
    a, s = _check(maps, masks)
    k = s.sum(1)
    order = torch.argsort(a, dim=1, descending=True, stable=True)
    ranked = s.gather(1, order)
    first_k = torch.arange(a.shape[1])[None, :] < k[:, None]
    hits = (ranked & first_k).sum(1).double()
    ranks = (k > 0) & (a.amax(1) > a.amin(1))
    return torch.where(ranks, hits / k.clamp(min=1).double(), torch.full_like(hits, float("nan")))


def box_masks(shape: tuple[int, int, int], boxes: Sequence[tuple[int, int, int, int]]) -> Tensor:
    """Masks (N, H, W) bool of one box per image, ``(top, left, height, width)`` in pixels
    (e.g. a planted patch), clipped to the image."""
    n, h, w = shape
    if len(boxes) != n:
        raise ValueError(f"expected {n} boxes (one per image), got {len(boxes)}")
    out = torch.zeros(shape, dtype=torch.bool)
    for i, (top, left, bh, bw) in enumerate(boxes):
        if bh <= 0 or bw <= 0:
            raise ValueError(f"box {i} has no area: {(top, left, bh, bw)}")
        out[i, max(0, top) : min(h, top + bh), max(0, left) : min(w, left + bw)] = True
    return out
