"""ROAD, RemOve And Debias (Rong, Leemann et al., "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022): deletion curves whose removed pixels are filled
by noisy linear imputation from their neighbours instead of a constant, so that the curve does
not measure how the model reacts to an out-of-distribution patch of black.

Two orders: most relevant first (MoRF: a faithful map makes the prediction change early, low
is good) and least relevant first (LeRF: the prediction should survive, high is good). At each
percentage p the ``int(H * W * p / 100)`` pixels first in the order are imputed, and the
score is whether the model still predicts the explained class (Quantus's ``ROAD`` accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stresslab.devices import FORWARD_PIXELS, images_per_pass, model_device
from stresslab.metrics.imputation import noisy_linear_imputation
from stresslab.probes.explain.quality import pixel_order
from stresslab.scoped import inference_scope

DEFAULT_PERCENTAGES: tuple[float, ...] = (10.0, 30.0, 50.0, 70.0, 90.0)
IMPUTE_PIXELS = 64 * 28 * 28
"""Image pixels (H * W per image) imputed at once: all percentages and both orders of
``IMPUTE_PIXELS // (H * W)`` images (at least one) in one banded solve, then one batched
forward pass over them (64 Fashion-MNIST images, 640 imputed copies, at a time)."""


@dataclass(frozen=True)
class RoadCurves:
    """Per image and percentage (N, P) float: 1.0 where the model still predicts the explained
    class after the pixels are imputed, for most- (``morf``) and least-relevant-first (``lerf``)."""

    percentages: tuple[float, ...]
    morf: Tensor
    lerf: Tensor

    @property
    def morf_score(self) -> Tensor:
        """(N,) mean over the percentages (area under the MoRF curve): lower is better."""
        return self.morf.mean(dim=1)

    @property
    def lerf_score(self) -> Tensor:
        """(N,) mean over the percentages (area under the LeRF curve): higher is better."""
        return self.lerf.mean(dim=1)

    @property
    def gap(self) -> Tensor:
        """(N,) LeRF minus MoRF score, in [-1, 1]: higher is better."""
        return self.lerf_score - self.morf_score


def removal_masks(maps: Tensor, percentages: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Pixels removed at each percentage: maps (N, H, W) -> MoRF and LeRF masks (N, P, H, W)
    bool. Ties in a map keep raster order (:func:`pixel_order`)."""
    n, h, w = maps.shape
    ranks = pixel_order(maps)  # 0 = most relevant
    counts = torch.tensor([int(h * w * p / 100) for p in percentages])
    morf = ranks[:, None, :] < counts[None, :, None]
    lerf = ranks[:, None, :] >= (h * w - counts)[None, :, None]
    return morf.view(n, len(counts), h, w), lerf.view(n, len(counts), h, w)


def _check_percentages(percentages: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(p) for p in percentages)
    if not out or any(not 0.0 < p < 100.0 for p in out):
        raise ValueError(f"ROAD percentages must be in (0, 100), got {list(percentages)!r}")
    return out


@torch.inference_mode()
def _still_predicted(model: nn.Module, x: Tensor, target: Tensor, batch_size: int) -> Tensor:
    """(n,) float: 1.0 where ``model``'s top class on ``x`` (n, C, H, W) is ``target`` (n,)."""
    device = model_device(model)
    batch_size = min(batch_size, images_per_pass(x.shape[2], x.shape[3], FORWARD_PIXELS))
    out = []
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size].to(device, torch.float32))
        out.append((logits.argmax(1).cpu() == target[i : i + batch_size]).float())
    return torch.cat(out) if out else torch.zeros(0)


def road_curves(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    target: Tensor,
    *,
    percentages: Sequence[float] = DEFAULT_PERCENTAGES,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> RoadCurves:
    """ROAD curves of ``maps`` (N, H, W) for images ``x`` (N, C, H, W) in [0, 1] and explained
    classes ``target`` (N,) int64 (see the module docstring). ``noise`` is the standard
    deviation of the imputation noise in pixel units (0.01 as Quantus and the paper),
    drawn from ``generator`` on the CPU. ``batch_size`` images per forward pass.
    """
    pct = _check_percentages(percentages)
    n, c, h, w = x.shape
    if maps.shape != (n, h, w) or target.shape != (n,):
        raise ValueError(
            f"maps must be ({n}, {h}, {w}) and target ({n},); "
            f"got {tuple(maps.shape)} and {tuple(target.shape)}"
        )
    p = len(pct)
    morf_m, lerf_m = removal_masks(maps.detach().cpu(), pct)
    scores = torch.empty(2, n, p)
    xc, tc = x.detach().cpu().float(), target.detach().cpu().long()
    per_chunk = max(1, IMPUTE_PIXELS // max(1, h * w))
    with inference_scope(model):
        for start in range(0, n, per_chunk):
            sl = slice(start, min(n, start + per_chunk))
            b = sl.stop - start
            masks = torch.stack([morf_m[sl], lerf_m[sl]])  # (2, b, P, H, W)
            imgs = xc[sl][None, :, None].expand(2, b, p, c, h, w).reshape(-1, c, h, w)
            filled = noisy_linear_imputation(imgs, masks.reshape(-1, h, w), noise=noise, generator=generator)
            tgt = tc[sl][None, :, None].expand(2, b, p).reshape(-1)
            scores[:, sl] = _still_predicted(model, filled, tgt, batch_size).view(2, b, p)
    return RoadCurves(pct, scores[0], scores[1])
