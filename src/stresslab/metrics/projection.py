"""A seeded random projection that keeps wide embeddings to a bounded width.

Some models' ``features()`` grow with the image: a CNN whose features are its flattened last
feature map gives 96 x (side / 8)^2 floats per image for ``fast_cnn`` (13,824 at 96 px,
75,264 at 224 px). Held for every test image, or fitted as a D x D covariance, that width
costs memory quadratic in the pixels. A Gaussian random projection to
:data:`MAX_EMBEDDING_DIM` dimensions keeps distances and angles within a small relative
error (Johnson-Lindenstrauss), so kNN, clustering and Gaussian fits on the projection
measure what they measure on the features.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_EMBEDDING_DIM = 2048
"""Widest embeddings kept as they are; wider ones are projected to this many dimensions."""

CACHED_BYTES = 256 << 20
"""Largest projection matrix kept in memory between calls; larger ones are drawn block by
block at each call (the same matrix: the draws are seeded)."""


@functools.lru_cache(maxsize=2)
def _matrix(in_dim: int, out_dim: int, seed: int, block: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randn(min(block, in_dim - s), out_dim, generator=g) for s in range(0, in_dim, block)]
    return torch.cat(rows) / out_dim**0.5


@dataclass(frozen=True)
class Projection:
    """A seeded Gaussian random projection from ``in_dim`` to ``out_dim`` dimensions, entries
    N(0, 1/out_dim), drawn in row blocks of ``block`` so that a matrix over
    :data:`CACHED_BYTES` is never held whole; the same seed gives the same projection, in
    any process."""

    in_dim: int
    out_dim: int = MAX_EMBEDDING_DIM
    seed: int = 0
    block: int = 4096

    def __call__(self, features: Tensor) -> Tensor:
        """float (N, in_dim) -> float32 (N, out_dim)."""
        if features.ndim != 2 or features.shape[1] != self.in_dim:
            raise ValueError(f"features are {tuple(features.shape)}; the projection takes (N, {self.in_dim})")
        x = features.float()
        if self.in_dim * self.out_dim * 4 <= CACHED_BYTES:
            return x @ _matrix(self.in_dim, self.out_dim, self.seed, self.block)
        g = torch.Generator().manual_seed(self.seed)
        out = torch.zeros(len(x), self.out_dim)
        for start in range(0, self.in_dim, self.block):
            stop = min(self.in_dim, start + self.block)
            out += x[:, start:stop] @ (
                torch.randn(stop - start, self.out_dim, generator=g) / self.out_dim**0.5
            )
        return out


def bounded(features: Tensor) -> Tensor:
    """``features`` (N, D) as they are when D <= :data:`MAX_EMBEDDING_DIM`, else their
    :class:`Projection` (seed 0) to that width: (N, min(D, MAX_EMBEDDING_DIM)) float32."""
    if features.ndim != 2 or features.shape[1] <= MAX_EMBEDDING_DIM:
        return features
    return Projection(features.shape[1])(features)
