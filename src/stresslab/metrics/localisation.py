"""Localisation of attribution maps where the truth is known (a mask of the object, a planted
patch's box): relevance mass accuracy and relevance rank accuracy (Arras et al., "CLEVR-XAI:
A benchmark dataset for the ground truth evaluation of neural network explanations",
Information Fusion 2022), as Quantus's ``RelevanceMassAccuracy`` and ``RelevanceRankAccuracy``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def _check(maps: Tensor, masks: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, H*W) NumPy arrays of ``maps`` (float32 or float64, the order of the values kept)
    and ``masks`` (bool). The scores are computed in NumPy: on arrays this small torch's
    worker threads cost more than the work, and far more on a busy machine (measured 0.5x
    Quantus's speed on 64 maps under a load average of 18, with torch)."""
    if maps.ndim != 3 or masks.shape != maps.shape:
        raise ValueError(
            "maps must be (N, H, W) and masks the same shape; "
            f"got {tuple(maps.shape)} and {tuple(masks.shape)}"
        )
    a = maps.detach().cpu().flatten(1)
    if a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()  # exact: the order is kept
    arr = a.numpy()
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr, masks.detach().cpu().flatten(1).numpy().astype(bool, copy=False)


def relevance_mass_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's attribution that lies inside its mask: ``sum(map * mask) / sum(map)``.

    ``maps`` (N, H, W) as given (pass ``maps.clamp(min=0)`` for the positive evidence only, as
    the explain probe does; a signed map's ratio can leave [0, 1]); ``masks`` (N, H, W) bool.
    Returns (N,) float64, in [0, 1] for non-negative maps; NaN where the mask is empty or the
    map sums to 0. A map that is uniform scores the mask's area share.
    """
    a, s = _check(maps, masks)
    a = a.astype(np.float64)
    total = a.sum(1)
    inside = np.where(s, a, 0.0).sum(1)
    ok = (s.sum(1) > 0) & (total != 0)
    out = np.where(ok, inside / np.where(total != 0, total, 1.0), np.nan)
    return torch.from_numpy(out)


def relevance_rank_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of a map's K highest-ranked pixels that lie inside its mask, K = the mask's size.

    ``maps`` (N, H, W), ``masks`` (N, H, W) bool -> (N,) float64 in [0, 1]; NaN where the
    mask is empty or the map is constant (it ranks nothing). Other ties are broken in raster
    order, as a stable descending sort would (Quantus's ``argsort`` leaves their order
    unspecified).

    No pixel order is built: the K highest-ranked pixels are those above the map's K-th
    largest value ``t`` plus, in raster order, as many of the pixels equal to ``t`` as fill
    K. One sort of the values per map (NumPy, no index array) is the whole cost.
    """
    a, s = _check(maps, masks)
    n, hw = a.shape
    k = s.sum(1)
    if n == 0 or hw == 0:
        return torch.full((n,), float("nan"), dtype=torch.float64)
    ascending = np.sort(a, axis=1)
    rows = np.arange(n)
    t = ascending[rows, hw - np.clip(k, 1, hw)][:, None]  # the K-th largest value
    above = a > t
    tied = a == t
    room = k - above.sum(1)  # places left for tied pixels, >= 1 where k >= 1
    first_tied = tied & (np.cumsum(tied, axis=1) <= room[:, None])
    hits = ((above | first_tied) & s).sum(1)
    ranks = (k > 0) & (ascending[:, -1] > ascending[:, 0])
    out = np.where(ranks, hits / np.maximum(k, 1), np.nan)
    return torch.from_numpy(out.astype(np.float64))


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
