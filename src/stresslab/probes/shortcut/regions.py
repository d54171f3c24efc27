"""Where a class's evidence sits: per-class mean attribution maps and the box that carries
most of it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor


@dataclass(frozen=True)
class Box:
    """A rectangle of pixels: rows ``top .. top + height - 1``, columns ``left .. left + width - 1``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def area(self) -> int:
        return self.height * self.width

    @property
    def rows(self) -> slice:
        return slice(self.top, self.top + self.height)

    @property
    def cols(self) -> slice:
        return slice(self.left, self.left + self.width)

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other``, in [0, 1]."""
        h = max(0, min(self.top + self.height, other.top + other.height) - max(self.top, other.top))
        w = max(0, min(self.left + self.width, other.left + other.width) - max(self.left, other.left))
        inter = h * w
        return inter / (self.area + other.area - inter) if inter else 0.0

    def describe(self) -> str:
        return (
            f"rows {self.top}-{self.top + self.height - 1}, columns {self.left}-{self.left + self.width - 1}"
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def normalized(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Each map's positive part scaled to sum 1: maps (N, H, W) -> (shares (M, H, W), kept (N,) bool).

    Maps with no positive mass (nothing to share out) are dropped (``kept`` False).
    """
    pos = maps.clamp(min=0).double()
    mass = pos.flatten(1).sum(dim=1)
    kept = mass > 0
    return (pos[kept] / mass[kept][:, None, None]).float(), kept


def box_share(shares: Tensor, box: Box) -> Tensor:
    """Share of each normalized map (N, H, W) inside ``box``: (N,) in [0, 1]."""
    return shares[:, box.rows, box.cols].flatten(1).sum(dim=1)


def densest_window(mean_map: Tensor, height: int, width: int) -> Box:
    """The ``height`` x ``width`` window of ``mean_map`` (H, W) with the largest sum
    (the first in raster order on ties)."""
    sums = F.avg_pool2d(mean_map[None, None].double(), (height, width), stride=1)[0, 0]
    flat = int(torch.argmax(sums.flatten()))
    return Box(flat // sums.shape[1], flat % sums.shape[1], height, width)


def top_region(mean_map: Tensor, fraction: float = 0.03, max_fraction: float = 0.2) -> Box:
    """The box around the strongest connected part of the top ``fraction`` of pixels.

    ``mean_map`` (H, W) >= 0 is a class's mean normalized attribution. Its top
    ``ceil(fraction * H * W)`` pixels (ties in raster order) are split into 8-connected
    components; the box is the bounding box of the component with the most attribution. A box larger than
    ``max_fraction`` of the image is replaced by the densest square window of that area
    (:func:`densest_window`), so a diffuse map still yields a local region to test.
    """
    if not 0.0 < fraction <= max_fraction <= 1.0:
        raise ValueError(f"need 0 < fraction <= max_fraction <= 1; got {fraction}, {max_fraction}")
    h, w = mean_map.shape
    k = max(1, math.ceil(fraction * h * w))
    # exactly k pixels: ties at the cut go by raster order (a stable sort), not all at once
    top = torch.argsort(mean_map.flatten().double(), descending=True, stable=True)[:k]
    flat = np.zeros(h * w, dtype=bool)
    flat[top.numpy()] = True
    mask = flat.reshape(h, w)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    m = mean_map.double().numpy()
    masses = ndimage.sum(m, labels, index=np.arange(1, n + 1))
    best = int(np.argmax(masses)) + 1
    rows, cols = np.nonzero(labels == best)
    box = Box(
        int(rows.min()), int(cols.min()), int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    )
    if box.area > max_fraction * h * w:
        side = max(1, math.isqrt(int(max_fraction * h * w)))
        box = densest_window(mean_map, min(side, h), min(side, w))
    return box
