"""Lower resolution as a degradation: downsample by a factor, then upsample back.

Not one of the 15 CIFAR-10-C corruptions (and not registered in ``CORRUPTIONS``): the
corruption probe runs it beside them, by factor, to ask whether small images lose the
details that separate the classes a model confuses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def lower_resolution(x: Tensor, factor: int) -> Tensor:
    """``x`` at 1/``factor`` of its resolution, brought back to its own size.

    ``x``: float images (N, C, H, W) in [0, 1]. Each side is averaged down to
    ``max(1, round(side / factor))`` pixels (area averaging, ``F.interpolate(mode="area")``,
    i.e. adaptive average pooling: every output pixel is the mean of the input pixels it
    covers) and upsampled back to (H, W) bilinearly (``align_corners=False``). Returns the
    same shape, dtype and device, in [0, 1] (both steps are convex combinations of pixels).
    ``factor`` 1 returns ``x`` itself.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"expected float images (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    small = F.interpolate(x.float(), size=(max(1, round(h / factor)), max(1, round(w / factor))), mode="area")
    back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return torch.clamp(back, 0.0, 1.0).to(x.dtype)
