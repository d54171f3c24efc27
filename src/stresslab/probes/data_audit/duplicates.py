"""Exact and near duplicates within each split and across training and test, through the shared
search in :mod:`stresslab.metrics.duplicates` (the representation probe's too)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stresslab.data.cache import release_pages
from stresslab.metrics.duplicates import ImageRows, exact_duplicates, exact_groups, near_duplicates, nearest


@dataclass
class Pair:
    """Two images that match: positions ``a`` and ``b`` in their splits' tensors (``b`` in the
    training set for a cross pair), ``similarity`` (1.0 for an exact copy), ``same_label``."""

    a: int
    b: int
    similarity: float
    same_label: bool


def exact_within(x: ImageRows, y: Tensor) -> list[Pair]:
    """Each image of a group of equal uint8 images paired with the group's first."""
    groups = exact_groups(x, release_pages)  # a cached set's pages leave the resident set as hashed
    return [Pair(i, g[0], 1.0, bool(y[i] == y[g[0]])) for g in groups for i in g[1:]]


def exact_across(train_x: ImageRows, train_y: Tensor, test_x: ImageRows, test_y: Tensor) -> list[Pair]:
    """Test images with an equal training image (the first one)."""
    return [
        Pair(d.test, d.train, 1.0, bool(test_y[d.test] == train_y[d.train]))
        for d in exact_duplicates(train_x, test_x, release_pages)
    ]


def near_within(sig: Tensor, pos: Tensor, y: Tensor, threshold: float) -> list[Pair]:
    """Pairs of a sample (signatures (n, D) of positions ``pos`` (n,)) with cosine >=
    ``threshold``, each unordered pair once, positions in the split."""
    sim, idx = nearest(sig)
    seen: set[tuple[int, int]] = set()
    out = []
    for d in near_duplicates(sim, idx, threshold):
        key = (min(d.test, d.train), max(d.test, d.train))
        if key in seen:
            continue
        seen.add(key)
        a, b = int(pos[key[1]]), int(pos[key[0]])
        out.append(Pair(a, b, d.similarity, bool(y[a] == y[b])))
    return out


def near_across(
    test_sig: Tensor,
    test_pos: Tensor,
    train_sig: Tensor,
    train_pos: Tensor,
    test_y: Tensor,
    train_y: Tensor,
    threshold: float,
) -> list[Pair]:
    """Test images of the sample whose nearest training signature has cosine >= ``threshold``."""
    sim, idx = nearest(test_sig, train_sig)
    return [
        Pair(
            int(test_pos[d.test]),
            int(train_pos[d.train]),
            d.similarity,
            bool(test_y[test_pos[d.test]] == train_y[train_pos[d.train]]),
        )
        for d in near_duplicates(sim, idx, threshold)
    ]


def flagged(pairs: list[Pair], n: int, side: str = "a") -> Tensor:
    """Bool (n,) over a split: the images on ``side`` ("a", "b" or "both") of any pair."""
    out = torch.zeros(n, dtype=torch.bool)
    for p in pairs:
        if side in ("a", "both"):
            out[p.a] = True
        if side in ("b", "both"):
            out[p.b] = True
    return out
