"""Simple per-image properties: brightness, contrast, sharpness, blockiness, flat area and
object area.

They describe slices of failures and, where no data audit ran, give the image-quality
evidence of the diagnosis (an image far outside the range of the correctly classified ones).
"""

from __future__ import annotations

import numpy as np

from stresslab.data.cache import release_pages
from stresslab.devices import images_within

#: The properties :func:`image_properties` returns, in column order.
PROPERTIES = ("brightness", "contrast", "sharpness", "blockiness", "flat_area", "object_area")
#: Which side of the correctly classified images' range marks a damaged image, per property
#: the diagnosis flags (object area only describes slices): an image can be too dark or too
#: bright, but not "too little blocky".
DAMAGE_SIDES: dict[str, tuple[str, ...]] = {
    "brightness": ("low", "high"),
    "contrast": ("low", "high"),
    "sharpness": ("low", "high"),
    "blockiness": ("high",),
    "flat_area": ("high",),
}
#: Block sides (pixels) :func:`blockiness` tries; a side is tried where the image holds at
#: least three blocks of it across.
BLOCK_SIDES = range(2, 9)
#: Image values (images x channels x height x width) converted to float at a time: 1,024
#: Fashion-MNIST images, 29 RGB images of 96 px.
CHUNK_VALUES = 1024 * 28 * 28


def unit_pixels(x: np.ndarray) -> np.ndarray:
    """Images as float32 in [0, 1]: uint8 (0..255) divided by 255, floats (already in [0, 1],
    as a run given float images keeps them) passed through."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32, copy=False)


def image_properties(
    x: np.ndarray, background: float | None = None, tolerance: float = 0.05
) -> dict[str, np.ndarray]:
    """Per-image properties of images ``x`` (N, C, H, W), uint8 (0..255) or floats in
    [0, 1], each an (N,) float64 array.

    ``brightness``: mean pixel value in [0, 1]; ``contrast``: standard deviation of the
    pixel values in [0, 1] (RMS contrast); ``sharpness``: mean absolute 4-neighbour
    Laplacian of the channel mean, in [0, 4] (low for blurred images); ``blockiness``: see
    :func:`blockiness`, in [0, 1) (high for images made of uniform blocks: heavy compression,
    pooling, pixelation); ``flat_area``: share of pixels, in [0, 1], whose 3x3 neighbourhood of
    the channel mean is constant (within one 8-bit level) and, where the dataset has a plain
    ``background``, farther than ``tolerance`` from it (a patch of one value pasted over the
    image, a clipped or missing region); ``object_area``:
    share of pixels farther than ``tolerance`` from the plain ``background`` value in some
    channel, in [0, 1], NaN for every image when the dataset has no plain background.

    Computed :data:`CHUNK_VALUES` values at a time: only one chunk is ever held as floats,
    so a memory-mapped test set larger than memory streams through.
    """
    parts = []
    chunk = images_within(int(np.prod(x.shape[1:])), CHUNK_VALUES)
    for i in range(0, len(x), chunk):
        parts.append(_properties(x[i : i + chunk], background, tolerance))
        release_pages()  # a cached test set's pages read so far leave the resident set
    if not parts:
        return {name: np.zeros(0, dtype=np.float64) for name in PROPERTIES}
    return {name: np.concatenate([p[name] for p in parts]) for name in PROPERTIES}


def _properties(x: np.ndarray, background: float | None, tolerance: float) -> dict[str, np.ndarray]:
    """:func:`image_properties` of one chunk of images."""
    f = unit_pixels(x)
    n = len(f)
    flat = f.reshape(n, -1)
    gray = f.mean(axis=1)
    lap = np.zeros_like(gray)
    if gray.shape[1] >= 3 and gray.shape[2] >= 3:
        c = gray[:, 1:-1, 1:-1]
        lap[:, 1:-1, 1:-1] = (
            4 * c - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1] - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:]
        )
    out = {
        "brightness": flat.mean(axis=1).astype(np.float64),
        "contrast": flat.std(axis=1).astype(np.float64),
        "sharpness": np.abs(lap).reshape(n, -1).mean(axis=1).astype(np.float64),
        "blockiness": blockiness(gray),
        "flat_area": _flat_area(gray, background, tolerance),
    }
    if background is None:
        out["object_area"] = np.full(n, np.nan)
    else:
        fg = (np.abs(f - background) > tolerance).any(axis=1)
        out["object_area"] = fg.reshape(n, -1).mean(axis=1).astype(np.float64)
    return out


def blockiness(gray: np.ndarray) -> np.ndarray:
    """How much of an image's gradient lies on the lines of a block grid: gray images
    ``gray`` (N, H, W) float -> (N,) float64 in [0, 1).

    For a block side ``b`` (:data:`BLOCK_SIDES`) and each axis, the share of the summed
    absolute differences between neighbouring pixels that falls on the grid lines of the
    best of the ``b`` offsets; the excess of the two axes' mean share over ``1 / b`` (the
    share of a grid-free image), maximised over ``b``, is the blockiness (0 for a constant
    image). An image averaged over ``b`` x ``b`` blocks has every difference on its grid:
    ``1 - 1 / b`` (0.75 for 4x4 blocks); photographs and Fashion-MNIST garments give about
    0.1 (99.9% of the Fashion-MNIST test set below 0.41).
    """
    n, h, w = gray.shape
    cols = np.abs(np.diff(gray, axis=2)).sum(axis=1, dtype=np.float64)  # (N, W - 1)
    rows = np.abs(np.diff(gray, axis=1)).sum(axis=2, dtype=np.float64)  # (N, H - 1)
    total = cols.sum(axis=1) + rows.sum(axis=1)
    best = np.zeros(n)
    for b in BLOCK_SIDES:
        if 3 * b > min(h, w):
            break
        # The line between pixels j and j + 1 is on the grid of offset o where (j + 1) % b == o.
        on_cols = np.max([cols[:, (o - 1) % b :: b].sum(axis=1) for o in range(b)], axis=0)
        on_rows = np.max([rows[:, (o - 1) % b :: b].sum(axis=1) for o in range(b)], axis=0)
        share = np.divide(on_cols + on_rows, total, out=np.zeros(n), where=total > 0)
        best = np.maximum(best, np.where(total > 0, share - 1.0 / b, 0.0))
    return best


def _flat_area(gray: np.ndarray, background: float | None, tolerance: float) -> np.ndarray:
    """:func:`image_properties`'s ``flat_area`` of gray images (N, H, W) in [0, 1]."""
    n, h, w = gray.shape
    if h < 3 or w < 3:
        return np.zeros(n)
    window = np.lib.stride_tricks.sliding_window_view(gray, (3, 3), axis=(1, 2))
    flat = window.max(axis=(3, 4)) - window.min(axis=(3, 4)) <= 1.0 / 255 + 1e-6
    if background is not None:
        flat &= np.abs(gray[:, 1:-1, 1:-1] - background) > tolerance
    return flat.reshape(n, -1).sum(axis=1) / float(h * w)
