"""Simple per-image properties: brightness, contrast, sharpness and object area.

They describe slices of failures and, where no data audit ran, give the image-quality
evidence of the diagnosis (an image far outside the range of the correctly classified ones).
"""

from __future__ import annotations

import numpy as np

from stresslab.data.cache import release_pages

#: The properties :func:`image_properties` returns, in column order.
PROPERTIES = ("brightness", "contrast", "sharpness", "object_area")
#: Images converted to float at a time.
CHUNK = 1024


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
    Laplacian of the channel mean, in [0, 4] (low for blurred images); ``object_area``:
    share of pixels farther than ``tolerance`` from the plain ``background`` value in some
    channel, in [0, 1], NaN for every image when the dataset has no plain background.

    Computed :data:`CHUNK` images at a time: only one chunk is ever held as floats, so a
    memory-mapped test set larger than memory streams through.
    """
    parts = []
    for i in range(0, len(x), CHUNK):
        parts.append(_properties(x[i : i + CHUNK], background, tolerance))
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
    }
    if background is None:
        out["object_area"] = np.full(n, np.nan)
    else:
        fg = (np.abs(f - background) > tolerance).any(axis=1)
        out["object_area"] = fg.reshape(n, -1).mean(axis=1).astype(np.float64)
    return out
