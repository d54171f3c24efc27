"""Noisy linear imputation of removed pixels, the "debias" of ROAD (Rong et al., "A Consistent
and Efficient Evaluation Strategy for Attribution Methods", ICML 2022).

Each removed pixel takes the weighted mean of its eight neighbours (weight 1/6 for the four
edge neighbours, 1/12 for the four corners; neighbours outside the image are left out and the
weights renormalized), where a neighbour that is itself removed is an unknown too. This is one
sparse linear system per image (a discrete Laplace equation with the kept pixels as boundary
values); the systems of a batch are solved at once as one block-diagonal system. Gaussian noise
of standard deviation ``noise`` is then added to every imputed value, so the filled region
carries no exact linear trace of the pixels around it.

The system is symmetric positive definite (each unknown's row has its neighbour weights as the
diagonal and minus the weights of its unknown neighbours off it; every group of connected
unknowns touches a kept pixel), and with the unknowns in raster order an unknown's neighbours
are at most W + 1 unknowns away: the whole batch is one banded system of bandwidth <= W + 1,
solved by a banded Cholesky factorisation (LAPACK ``pbsv``) in O(K W^2) for K unknowns. Quantus
and the original code solve the same system per image with a general sparse LU (SuperLU).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import solveh_banded
from threadpoolctl import threadpool_limits
from torch import Tensor

BAND_BYTES = 64 << 20
"""Bytes of banded matrix solved at once (images are grouped to stay within it; one image
alone may exceed it)."""

#: (row offset, column offset, weight) of the eight neighbours (the original code's weights).
NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)


def linear_imputation(x: Tensor, removed: Tensor) -> Tensor:
    """``x`` (N, C, H, W) with the pixels where ``removed`` (N, H, W) bool is True replaced by
    the solution of the neighbour-mean equations (see the module docstring); float32, CPU.

    Every channel is imputed from the same channel. An image whose pixels are all removed has
    no boundary values and a singular system: ValueError naming it.
    """
    if x.ndim != 4 or removed.shape != (x.shape[0], x.shape[2], x.shape[3]):
        raise ValueError(
            f"images must be (N, C, H, W) and the removed mask (N, H, W); got {tuple(x.shape)} "
            f"and {tuple(removed.shape)}"
        )
    n, _, h, w = x.shape
    gone = removed.detach().cpu().numpy().astype(bool).reshape(n, h * w)
    full = np.flatnonzero(gone.all(axis=1))
    if len(full) and h * w > 0:
        raise ValueError(f"image {int(full[0])} has every pixel removed: nothing to impute from")
    values = x.detach().cpu().double().numpy()
    out = values.copy()
    # The systems are independent per image: solve them in groups whose band (about W + 2
    # float64 per unknown) stays within BAND_BYTES, so memory does not grow with the batch
    # (320 images at 96 px, half removed, made one band of 1.1 GB).
    per_group = max(1, BAND_BYTES // (8 * (w + 2)))
    unknowns = gone.sum(axis=1)
    start = 0
    while start < n:
        stop, held = start + 1, int(unknowns[start])
        while stop < n and held + int(unknowns[stop]) <= per_group:
            held += int(unknowns[stop])
            stop += 1
        out[start:stop] = _impute(values[start:stop], gone[start:stop].reshape(-1, h, w))
        start = stop
    return torch.from_numpy(out).float()


def _impute(values: np.ndarray, removed_grid: np.ndarray) -> np.ndarray:
    """One banded solve for images ``values`` (n, C, H, W) float64 and their removed pixels
    ``removed_grid`` (n, H, W) bool -> the images (n, C, H, W) with the removed pixels imputed."""
    n, c, h, w = values.shape
    k = int(removed_grid.sum())
    if k == 0:
        return values.copy()
    # The equations are assembled on the whole pixel grid with one pixel of padding, each
    # neighbour offset a shifted slice (no per-unknown indexing), then the unknowns' rows are
    # taken out. Unknowns are numbered image-major in raster order, as np.nonzero gives them.
    var = np.full((n, h + 2, w + 2), -1, dtype=np.int64)
    var[:, 1:-1, 1:-1][removed_grid] = np.arange(k)
    inside = np.zeros((h + 2, w + 2), dtype=bool)
    inside[1:-1, 1:-1] = True
    known = np.zeros((n, c, h + 2, w + 2))  # the kept values; 0 where removed or outside
    known[:, :, 1:-1, 1:-1] = np.where(removed_grid[:, None], 0.0, values)
    me = var[:, 1:-1, 1:-1]
    diag_grid = np.zeros((h, w))
    rhs_grid = np.zeros((n, c, h, w))
    rows, cols, vals = [], [], []
    for dr, dc, weight in NEIGHBOURS:
        rs, cs = slice(1 + dr, 1 + dr + h), slice(1 + dc, 1 + dc + w)
        there = inside[rs, cs]  # (h, w): the neighbour is in the image
        other = var[:, rs, cs]  # (n, h, w): its unknown's number, -1 if kept or outside
        diag_grid += weight * there
        rhs_grid += weight * known[:, :, rs, cs]
        later = removed_grid & (other > me)  # each symmetric pair once, in the upper triangle
        rows.append(me[later])
        cols.append(other[later])
        vals.append(np.full(len(rows[-1]), -weight))
    diag = np.broadcast_to(diag_grid, (n, h, w))[removed_grid]
    rhs = rhs_grid.transpose(0, 2, 3, 1)[removed_grid]  # (k, c)
    i, j, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    upper = int((j - i).max()) if len(i) else 0
    band = np.zeros((upper + 1, k))
    band[upper] = diag
    band[upper + i - j, j] = v
    # One BLAS thread: the factorisation is a long chain of tiny (bandwidth-sized) updates, which
    # threads only slow down (measured 0.1 s with one thread, 28 s with OpenBLAS's default on a
    # busy 2-core machine, for 64 images at 50%).
    with threadpool_limits(limits=1, user_api="blas"):
        solved = solveh_banded(band, rhs, check_finite=False).reshape(k, c)
    out = values.transpose(0, 2, 3, 1).copy()  # (n, h, w, c)
    out[removed_grid] = solved
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def noisy_linear_imputation(
    x: Tensor,
    removed: Tensor,
    *,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    """:func:`linear_imputation` plus Gaussian noise (standard deviation ``noise``, pixel units)
    on every imputed value (drawn on the CPU from ``generator``): (N, C, H, W) float32, CPU.

    As the original ROAD code and Quantus's ``noisy_linear_imputation``, values are not clipped
    to [0, 1].
    """
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    out = linear_imputation(x, removed)
    if noise > 0:
        eps = torch.randn(out.shape, generator=generator) * noise
        mask = removed.detach().cpu().bool()[:, None].expand_as(out)
        out = torch.where(mask, out + eps, out)
    return out
