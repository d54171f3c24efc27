"""Superclass labels beside the class labels (CIFAR-100's 20 superclasses of 5 classes each).

A loader that knows a hierarchy gives one superclass label per image
(``RawDataset.train_coarse`` / ``test_coarse``) and the superclass names; :func:`check_coarse`
holds them to the data contract and :func:`coarse_map` derives the class -> superclass map
the probes need (a predicted class has no image label, only its class's superclass).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stresslab.data.loaders.base import RawDataset
from stresslab.errors import DataError


def check_coarse(raw: RawDataset, name: str) -> bool:
    """Whether ``raw`` has superclasses; DataError naming the dataset when they are malformed.

    Either all of ``train_coarse``, ``test_coarse`` and ``coarse_names`` are set or none is;
    each label array is int64 (N,) like its class labels, in ``0 .. len(coarse_names) - 1``.
    """
    parts = (raw.train_coarse, raw.test_coarse, raw.coarse_names)
    if all(p is None for p in parts):
        return False
    if any(p is None for p in parts):
        raise DataError(
            f"dataset {name!r}: superclasses need train_coarse, test_coarse and coarse_names together"
        )
    assert raw.coarse_names is not None
    m = len(raw.coarse_names)
    labelled = (("train", raw.train_coarse, raw.train_y), ("test", raw.test_coarse, raw.test_y))
    for part, coarse, fine in labelled:
        assert coarse is not None
        if coarse.dtype != torch.long or coarse.shape != fine.shape:
            raise DataError(
                f"dataset {name!r}: {part} superclass labels should be int64 {tuple(fine.shape)}, "
                f"got {coarse.dtype} {tuple(coarse.shape)}"
            )
        if len(coarse) and (int(coarse.min()) < 0 or int(coarse.max()) >= m):
            raise DataError(
                f"dataset {name!r}: {part} superclass labels {int(coarse.min())}..{int(coarse.max())} "
                f"do not fit {m} superclass names"
            )
    return True


def coarse_map(fine: Tensor, coarse: Tensor, num_classes: int, name: str) -> tuple[int, ...]:
    """The superclass of each class (K,) from paired labels ``fine`` and ``coarse`` (N,).

    A class that never appears gets -1 (unknown). DataError naming the dataset and the class
    when one class carries two superclasses: then there is no hierarchy to report.
    """
    out = [-1] * num_classes
    pairs = torch.stack([fine.long(), coarse.long()], 1)
    for k, c in torch.unique(pairs, dim=0).tolist() if len(fine) else []:
        if out[k] not in (-1, c):
            raise DataError(
                f"dataset {name!r}: class {k} has images in superclasses {out[k]} and {c}; "
                "each class must belong to exactly one superclass"
            )
        out[k] = int(c)
    return tuple(out)
