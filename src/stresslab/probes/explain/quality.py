"""How far a map can be trusted: faithfulness curves, the randomization test and the
share of attribution on the background."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import Tensor, nn

from stresslab.attributions.base import Attribution
from stresslab.devices import FORWARD_PIXELS, images_per_pass, model_device
from stresslab.scoped import inference_scope


def pixel_order(maps: Tensor) -> Tensor:
    """Rank of each pixel by attribution, highest first: (N, H, W) -> (N, H*W) int64, 0 = top.

    Ties keep raster order (stable sort), so curves are reproducible.
    """
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
    return ranks


@torch.inference_mode()
def deletion_insertion_curves(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    target: Tensor,
    baseline: Tensor,
    *,
    steps: int = 28,
    batch_size: int = 512,
) -> tuple[Tensor, Tensor]:
    """Deletion and insertion curves (Petsiuk et al., "RISE: Randomized Input Sampling for
    Explanation of Black-box Models", BMVC 2018).

    ``x`` (N, C, H, W) in [0, 1], ``maps`` (N, H, W), ``target`` (N,) int64, ``baseline``
    broadcastable to ``x`` (the "deleted" image). At step k of ``steps`` the ``round(k /
    steps * H * W)`` pixels ranked highest by the map are replaced by the baseline
    (deletion) or copied from ``x`` onto the baseline (insertion). Returns two (N, steps + 1)
    tensors of the target's softmax probability at each step. A faithful map makes the
    deletion curve fall fast and the insertion curve rise fast.
    """
    n, _, h, w = x.shape
    device = model_device(model)
    ranks = pixel_order(maps).to(device)
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) / steps * h * w).long().to(device)
    xd = x.to(device, torch.float32)
    base = baseline.to(device, torch.float32).expand_as(xd)
    td = target.to(device, torch.long)
    total = n * (steps + 1)
    scores = torch.empty(2, total, device=device)
    # Images per pass bounded in pixels too (FORWARD_PIXELS), so large images stay in bounds.
    per_pass = max(1, min(batch_size, images_per_pass(h, w, FORWARD_PIXELS)) // 2)
    with inference_scope(model):
        for start in range(0, total, per_pass):
            k = torch.arange(start, min(start + per_pass, total), device=device)
            img, step = k // (steps + 1), k % (steps + 1)
            top = (ranks[img] < counts[step][:, None]).view(-1, 1, h, w)  # (b, 1, H, W)
            deleted = torch.where(top, base[img], xd[img])
            inserted = torch.where(top, xd[img], base[img])
            probs = F.softmax(model(torch.cat([deleted, inserted])).float(), dim=1)
            tgt = td[img].repeat(2)
            scores[:, k] = probs.gather(1, tgt[:, None])[:, 0].view(2, -1)
    deletion, insertion = scores.view(2, n, steps + 1).cpu().unbind(0)
    return deletion, insertion


def curve_auc(curves: Tensor) -> Tensor:
    """Area under curves (N, S+1) sampled evenly on [0, 1] (trapezoid rule) -> (N,) in [0, 1]."""
    s = curves.shape[1] - 1
    return (curves[:, 1:] + curves[:, :-1]).sum(dim=1) / (2 * s)


def randomized_copy(model: nn.Module, seed: int, *, mode: str = "full") -> nn.Module:
    """A deep copy of ``model`` with re-initialized weights, for the model-parameter
    randomization test (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

    ``mode="full"`` re-initializes every module that has ``reset_parameters`` (all layers
    at once, the strongest form of the test); ``mode="top"`` only the last such module (the
    classifier layer), the first step of Adebayo's cascading randomization. The input
    normalization's buffers are kept (BatchNorm statistics are reset with its weights).
    The original model is not touched; the copy is seeded by ``seed`` and left in eval mode.
    """
    if mode not in ("full", "top"):
        raise ValueError(f"randomization mode must be 'full' or 'top'; got {mode!r}")
    clone = copy.deepcopy(model)
    resettable = [m for m in clone.modules() if callable(getattr(m, "reset_parameters", None))]
    if mode == "top":
        resettable = resettable[-1:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in resettable:
            module.reset_parameters()  # type: ignore[operator]
    for p in clone.parameters():
        p.grad = None
    return clone.eval()


def spearman_rows(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each row pair: (N, ...) and (N, ...) -> (N,) float64.

    Ties get average ranks (as ``scipy.stats.spearmanr``). A row that is constant in
    either input has no defined correlation and gives NaN.
    """
    ra = rankdata(a.flatten(1).double().numpy(), axis=1)
    rb = rankdata(b.flatten(1).double().numpy(), axis=1)
    ra = ra - ra.mean(axis=1, keepdims=True)
    rb = rb - rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denom > 0, (ra * rb).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)
    return torch.from_numpy(rho)


def map_agreement(
    method: Attribution,
    other: nn.Module,
    x: Tensor,
    target: Tensor,
    maps: Tensor,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``method``'s maps (N, H, W) of model ``other`` for images ``x`` (N, C, H, W) in [0, 1]
    and classes ``target`` (N,), and their per-image Spearman rank correlation (N,) float64
    with ``maps`` (N, H, W), on absolute values (a sign flip is not a different explanation;
    NaN where a map is constant). Returns ``(correlation, other_maps)``. The sanity checks of
    Adebayo et al. (2018) compare a model's maps with those of a model that should explain
    differently (:func:`randomization_test`, and the data randomization test)."""
    other_maps = method.attribute(other, x, target, batch_size=batch_size, generator=generator)
    return spearman_rows(maps.abs(), other_maps.abs()), other_maps


@dataclass(frozen=True)
class RandomizationResult:
    """Per-image Spearman correlations (N,) (NaN where a map is constant), their mean over
    the defined ones (NaN if none), and whether the method passed (mean < threshold)."""

    spearman: Tensor
    mean: float
    passed: bool


def randomization_test(
    method: Attribution,
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    trained_maps: Tensor,
    *,
    seed: int,
    mode: str = "full",
    threshold: float = 0.5,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> RandomizationResult:
    """The model-parameter randomization test (Adebayo et al., 2018).

    ``trained_maps`` (N, H, W) are ``method``'s maps of ``model`` for images ``x`` (N, C, H, W)
    in [0, 1] and classes ``target`` (N,); the same maps are computed on
    :func:`randomized_copy` ``(model, seed, mode=mode)`` (pass a ``generator`` seeded as for
    the trained maps so stochastic methods see the same noise) and compared by Spearman
    rank correlation of absolute values (a sign flip is not a different explanation). A
    faithful method's maps change when the weights do: a mean correlation of at least
    ``threshold`` fails the test. ``model`` is not modified.
    """
    random_model = randomized_copy(model, seed, mode=mode)
    try:
        rho, _ = map_agreement(method, random_model, x, target, trained_maps, batch_size, generator)
    finally:
        del random_model
    finite = rho[torch.isfinite(rho)]
    mean = float(finite.mean()) if len(finite) else math.nan
    return RandomizationResult(rho, mean, math.isfinite(mean) and mean < threshold)


def background_mask(x: Tensor, background: float, tolerance: float = 0.05) -> Tensor:
    """Pixels of ``x`` (N, C, H, W) in [0, 1] within ``tolerance`` of the plain background
    value in every channel -> bool (N, H, W)."""
    return ((x - background).abs() <= tolerance).all(dim=1)


def background_share(maps: Tensor, mask: Tensor) -> Tensor:
    """Share of positive attribution on background pixels: (N, H, W) maps and bool mask ->
    (N,) in [0, 1]; NaN where a map has no positive mass."""
    pos = maps.clamp(min=0).double()
    total = pos.flatten(1).sum(dim=1)
    on_bg = (pos * mask).flatten(1).sum(dim=1)
    return torch.where(total > 0, on_bg / total.clamp(min=1e-300), torch.full_like(total, float("nan")))
