"""What a region holds across a class's training images: a constant pattern, plain
background, or a part of the object."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from stresslab.probes.explain.quality import background_mask
from stresslab.probes.shortcut.regions import Box

PATTERN = "constant pattern"
BACKGROUND = "background"
OBJECT = "object"


@dataclass(frozen=True)
class RegionKind:
    """How a box looks across the images of its class.

    ``pattern_share``: share of the class's images whose patch is within the match
    tolerance of the class's median patch there (1.0: the same pixels in every image).
    ``object_pattern_share``: the same measure for boxes of the same size at random places
    on the class's object (median over places; NaN when the object has no room for one):
    what "constant" means for the object itself. ``others_pattern_share``: share of other
    classes' images matching the class's median patch (a class-specific pattern has few).
    ``background_share``: mean share of the box's pixels that are plain background in the
    class's images (NaN without a plain background). ``std_ratio``: mean per-pixel standard
    deviation across the class's images in the box over that of the object's pixels.
    ``kind``: :data:`PATTERN`, :data:`BACKGROUND` or :data:`OBJECT`.
    """

    kind: str
    pattern_share: float
    object_pattern_share: float
    others_pattern_share: float
    background_share: float
    std_ratio: float

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
            for k, v in asdict(self).items()
            if not (isinstance(v, float) and not math.isfinite(v))
        }


def match_share(
    patches: Tensor, reference: Tensor, tolerance: float, background: float | None = None
) -> float:
    """Share of ``patches`` (N, C, h, w) whose mean absolute difference from ``reference``
    (C, h, w) is at most ``tolerance`` (pixel units of [0, 1]) and, when a plain
    ``background`` value is given, that are not themselves plain background (within the
    same tolerance); NaN for N = 0."""
    if len(patches) == 0:
        return math.nan
    same = (patches - reference).abs().flatten(1).mean(dim=1) <= tolerance
    if background is not None:
        same &= (patches - background).abs().flatten(1).mean(dim=1) > tolerance
    return float(same.float().mean())


def describe_region(
    class_x: Tensor,
    other_x: Tensor,
    box: Box,
    *,
    background: float | None,
    background_tolerance: float = 0.05,
    match_tolerance: float = 0.1,
    min_pattern_share: float = 0.5,
    pattern_ratio: float = 2.0,
    n_random: int = 32,
    generator: torch.Generator | None = None,
) -> RegionKind:
    """Classify ``box`` from float images in [0, 1]: ``class_x`` (N, C, H, W) of the class
    whose evidence it carries, ``other_x`` (M, C, H, W) of other classes.

    A *constant pattern* is a box whose median patch over the class is not plain background
    and that at least ``min_pattern_share`` of the class's images repeat (within
    ``match_tolerance``; a plain-background patch never counts as a repeat), and at least
    ``pattern_ratio`` times as often as boxes of the same size elsewhere on the object do
    (boxes not overlapping this one, centered on pixels that are object in most of the
    class's images; without such places the share alone decides), and at least
    ``pattern_ratio`` times as often as the other classes' images repeat the same median
    patch (a patch every class shares, such as a plain border where no background is
    declared, is no shortcut; without ``other_x`` images this contrast is skipped). Unlike
    the object, it is
    the same in most images, also when only most of them carry it (where a per-pixel
    variance would be high). Otherwise a box that is mostly plain background
    (``background`` value, ``background_tolerance``) is *background*, else *object*.
    """
    n, _, h, w = class_x.shape
    patches = class_x[:, :, box.rows, box.cols]
    median = patches.median(dim=0).values
    share = match_share(patches, median, match_tolerance, background)
    others = match_share(other_x[:, :, box.rows, box.cols], median, match_tolerance, background)
    if background is not None:
        bg = background_mask(class_x, background, background_tolerance)  # (N, H, W)
        bg_share = float(bg[:, box.rows, box.cols].float().mean())
        on_object = bg.float().mean(dim=0) < 0.5
        plain = float((median - background).abs().mean()) <= match_tolerance
    else:
        bg_share = math.nan
        on_object = torch.ones(h, w, dtype=torch.bool)
        plain = False
    object_share = _object_pattern_share(
        class_x, box, on_object, match_tolerance, background, n_random, generator
    )
    std = class_x.std(dim=0).mean(dim=0) if n > 1 else torch.zeros(h, w)
    obj_std = float(std[on_object].mean()) if bool(on_object.any()) else math.nan
    std_ratio = float(std[box.rows, box.cols].mean()) / obj_std if obj_std > 0 else math.nan
    constant = (
        share >= min_pattern_share
        and (not math.isfinite(object_share) or share >= pattern_ratio * object_share)
        and (not math.isfinite(others) or share >= pattern_ratio * others)
    )
    if not plain and constant:
        kind = PATTERN
    elif math.isfinite(bg_share) and bg_share >= 0.5:
        kind = BACKGROUND
    else:
        kind = OBJECT
    return RegionKind(kind, share, object_share, others, bg_share, std_ratio)


def _object_pattern_share(
    x: Tensor,
    box: Box,
    on_object: Tensor,
    tolerance: float,
    background: float | None,
    n_random: int,
    generator: torch.Generator | None,
) -> float:
    """Median, over up to ``n_random`` random same-size boxes centered on ``on_object``
    pixels and not overlapping ``box``, of the share of images repeating their own median
    patch there (:func:`match_share`); NaN when there is no such place."""
    _, _, h, w = x.shape
    grid_t, grid_l = torch.meshgrid(
        torch.arange(h - box.height + 1), torch.arange(w - box.width + 1), indexing="ij"
    )
    ok = on_object[grid_t + box.height // 2, grid_l + box.width // 2]
    apart = (grid_t + box.height <= box.top) | (grid_t >= box.top + box.height)
    apart |= (grid_l + box.width <= box.left) | (grid_l >= box.left + box.width)
    cand_t, cand_l = grid_t[ok & apart], grid_l[ok & apart]
    if len(cand_t) == 0:
        return math.nan
    pick = torch.randperm(len(cand_t), generator=generator)[:n_random]
    shares = []
    for t, left in zip(cand_t[pick].tolist(), cand_l[pick].tolist(), strict=True):
        p = x[:, :, t : t + box.height, left : left + box.width]
        shares.append(match_share(p, p.median(dim=0).values, tolerance, background))
    return float(torch.tensor(shares).median())


def pattern_core(
    class_x: Tensor,
    box: Box,
    *,
    background: float | None,
    other_x: Tensor | None = None,
    match_tolerance: float = 0.1,
    min_pattern_share: float = 0.5,
    pattern_ratio: float = 2.0,
) -> Box | None:
    """The part of ``box``, grown by half its height and width on every side, that the
    class's images ``class_x`` (N, C, H, W) in [0, 1] repeat: the bounding box of the
    largest 8-connected group of pixels where at least ``min_pattern_share`` of the images
    are within ``match_tolerance`` of the class's median (all channels), the median is
    not plain ``background``, and, given other classes' images ``other_x`` (M, C, H, W),
    that share is at least ``pattern_ratio`` times the share of ``other_x`` within the
    same tolerance of the class's median there; ``None`` when no pixel qualifies.

    The contrast against other classes keeps what every class shares (a black border
    where no plain background is declared, a frame, a constant corner) out of the core:
    only what sets the class apart can be a shortcut to it.

    An attribution box is as wide as the method's blur (an occlusion window, a Grad-CAM
    cell): around a small planted pattern it takes in pixels of the object that vary from
    image to image, so the box as a whole is not a repeated patch though its core is.
    """
    dh, dw = (box.height + 1) // 2, (box.width + 1) // 2
    top, left = max(0, box.top - dh), max(0, box.left - dw)
    area = class_x[:, :, top : box.top + box.height + dh, left : box.left + box.width + dw]
    median = area.median(dim=0).values
    repeat = _pixel_match_share(area, median, match_tolerance)
    core = repeat >= min_pattern_share
    if other_x is not None and len(other_x) > 0:
        r, c = slice(top, top + area.shape[2]), slice(left, left + area.shape[3])
        others = _pixel_match_share(other_x[:, :, r, c], median, match_tolerance)
        core &= repeat >= pattern_ratio * others
    if background is not None:
        core &= (median - background).abs().amax(dim=0) > match_tolerance
    if not bool(core.any()):
        return None
    labels, n = ndimage.label(core.numpy(), structure=np.ones((3, 3), dtype=bool))
    sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    rows, cols = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return Box(
        top + int(rows.min()),
        left + int(cols.min()),
        int(rows.max() - rows.min() + 1),
        int(cols.max() - cols.min() + 1),
    )


def _pixel_match_share(x: Tensor, reference: Tensor, tolerance: float) -> Tensor:
    """(h, w) share of the images ``x`` (N, C, h, w) whose pixel is within ``tolerance`` of
    ``reference`` (C, h, w) in every channel."""
    return ((x - reference).abs() <= tolerance).all(dim=1).float().mean(dim=0)


def times_apart(kind: RegionKind) -> float:
    """How many times as often a region's class repeats its pattern as the other classes
    do (share over others' share; inf when no other image repeats it or others were not
    seen)."""
    others = kind.others_pattern_share
    if not math.isfinite(others) or others <= 0.0:
        return math.inf
    return kind.pattern_share / others


def sharper(core: RegionKind, box: RegionKind) -> bool:
    """Whether a box's pattern core is the better pattern to test: it sets the class further
    apart from the others (:func:`times_apart`, a ratio, so a box the other classes never match
    is only narrowed for the next reason), or as far apart and repeated by a larger share of
    the class's images."""
    a, b = times_apart(core), times_apart(box)
    return a > b or (a == b and core.pattern_share > box.pattern_share)
