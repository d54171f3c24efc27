"""Duplicates: exact pixel copies by hash, near-copies by cosine similarity of vectors (model
features in the representation probe, pixel signatures in the data audit).

The one implementation of duplicate search: across two sets (a test image that also sits in
the training set measures memory, not generalization) and within one set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from stresslab.metrics.neighbors import cosine_topk

HASH_CHUNK = 4096
"""Images hashed between two calls of the ``release`` callback."""


class ImageRows(Protocol):
    """uint8 images (N, C, H, W) read by rows: a tensor, or a view that copies the rows asked
    for (a training set kept in the on-disk image cache)."""

    @property
    def shape(self) -> torch.Size: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def __len__(self) -> int: ...

    def __getitem__(self, key: Any, /) -> Tensor: ...


Release = Callable[[], object] | None
"""Called after every chunk of a pass over the images (e.g. to drop the memory-mapped pages
read so far from the resident set), or None."""


def image_hashes(images: ImageRows, release: Release = None) -> list[bytes]:
    """One 128-bit BLAKE2b digest per image of the raw uint8 bytes (N, C, H, W) -> N digests,
    read :data:`HASH_CHUNK` images at a time, calling ``release`` after each chunk.

    Equal digests mean equal pixels (up to a 2^-64 collision chance at a billion images).
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"exact duplicates hash uint8 images, got {images.dtype}")
    out: list[bytes] = []
    for start in range(0, len(images), HASH_CHUNK):
        part = images[start : start + HASH_CHUNK]
        flat = part.reshape(len(part), -1).contiguous().numpy()
        out.extend(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat)
        if release is not None:
            release()
    return out


@dataclass
class DuplicatePair:
    """A test image and a training image that match: positions in ``split.test_x`` and
    ``split.train_x``, similarity (1.0 for exact copies), and ``copies``, how many training
    images match the test image (the pair shows the first)."""

    test: int
    train: int
    similarity: float
    copies: int = 1


def exact_duplicates(train_x: ImageRows, test_x: ImageRows, release: Release = None) -> list[DuplicatePair]:
    """Test images whose uint8 pixels equal some training image's, in test order.

    Args:
        train_x, test_x: uint8 (N, C, H, W) and (M, C, H, W) with the same C, H, W.
        release: called after every chunk hashed (:func:`image_hashes`).
    """
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"image shapes differ: train {tuple(train_x.shape)}, test {tuple(test_x.shape)}")
    first: dict[bytes, int] = {}
    count: dict[bytes, int] = {}
    for i, h in enumerate(image_hashes(train_x, release)):
        first.setdefault(h, i)
        count[h] = count.get(h, 0) + 1
    return [
        DuplicatePair(test=j, train=first[h], similarity=1.0, copies=count[h])
        for j, h in enumerate(image_hashes(test_x, release))
        if h in first
    ]


def exact_groups(images: ImageRows, release: Release = None) -> list[list[int]]:
    """Groups (each of >= 2 positions, ascending; groups by first position) of uint8 images
    (N, C, H, W) with equal pixels (``release``: see :func:`image_hashes`)."""
    groups: dict[bytes, list[int]] = {}
    for i, h in enumerate(image_hashes(images, release)):
        groups.setdefault(h, []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def nearest(queries: Tensor, keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Cosine similarity (Q,) and position (Q,) of each query's most similar key; with
    ``keys=None`` the keys are the queries and a row's own position is skipped (within one
    set). Vectors float (Q, D) and (N, D); a set of one row has no other row (similarity -2,
    position -1)."""
    if keys is not None:
        sim, idx = cosine_topk(queries, keys, 1)
        if sim.shape[1] == 0:
            return torch.full((len(queries),), -2.0), torch.full((len(queries),), -1, dtype=torch.long)
        return sim[:, 0], idx[:, 0]
    sim, idx = cosine_topk(queries, queries, 2)
    if sim.shape[1] < 2:
        return torch.full((len(queries),), -2.0), torch.full((len(queries),), -1, dtype=torch.long)
    own = idx[:, 0] == torch.arange(len(queries))
    return torch.where(own, sim[:, 1], sim[:, 0]), torch.where(own, idx[:, 1], idx[:, 0])


def near_duplicates(
    nearest_similarity: Tensor, nearest_train: Tensor, threshold: float, test_positions: Tensor | None = None
) -> list[DuplicatePair]:
    """Test images whose nearest training embedding has cosine similarity >= ``threshold``.

    Args:
        nearest_similarity: float (M,) similarity of each test image to its nearest training
            image (the first column of :func:`~.neighbors.cosine_topk`).
        nearest_train: int64 (M,) that training image's position in ``split.train_x``.
        threshold: in [-1, 1].
        test_positions: int64 (M,) positions in ``split.test_x`` (default ``0..M-1``).

    Returns:
        Pairs, most similar first.
    """
    pos = test_positions if test_positions is not None else torch.arange(len(nearest_similarity))
    hit = torch.nonzero(nearest_similarity >= threshold).flatten()
    hit = hit[torch.argsort(nearest_similarity[hit], descending=True, stable=True)]
    return [
        DuplicatePair(test=int(pos[i]), train=int(nearest_train[i]), similarity=float(nearest_similarity[i]))
        for i in hit.tolist()
    ]


def pixel_mae(train_x: ImageRows, test_x: ImageRows, pairs: list[DuplicatePair]) -> list[float]:
    """Mean absolute pixel difference of each pair, in uint8 units (0: identical, 255: opposite).

    A near-duplicate in feature space with a large pixel difference is a look-alike, not a copy.
    """
    if not pairs:
        return []
    a = test_x[[d.test for d in pairs]].float().flatten(1)
    b = train_x[[d.train for d in pairs]].float().flatten(1)
    return (a - b).abs().mean(dim=1).tolist()


def accuracy_split(correct: Tensor, flagged: list[int]) -> tuple[float | None, float | None]:
    """Accuracy (in [0, 1]) on the flagged test positions and on the others; ``None`` where a
    group is empty. ``correct`` is bool (M,) over the whole test set."""
    mask = np.zeros(len(correct), dtype=bool)
    mask[flagged] = True
    c = correct.numpy()
    on = float(c[mask].mean()) if mask.any() else None
    off = float(c[~mask].mean()) if (~mask).any() else None
    return on, off
