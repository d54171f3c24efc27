"""Images read by index from a larger array: a training set kept as a view of the on-disk cache.

A split's training and validation images are rows of the dataset's official training set.
When that set is a memory map of the image cache (:mod:`stresslab.data.cache`), copying the
kept rows would bring the whole training set into memory; an :class:`IndexedImages` keeps the
memory map and the rows' positions instead, and copies only the rows asked for, one batch at
a time. Indexing it (an int, a slice, positions, a boolean mask) returns an ordinary uint8
tensor, as indexing a tensor with positions does, so code that reads batches
(``to_float(x[i : i + b])``, ``x[perm[:b]]``) works on either. Whole-set operations
(``torch.cat``, in-place writes) do not; :meth:`IndexedImages.materialize` copies the rows
for code that needs them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import torch
from torch import Tensor

from stresslab.data.cache import mapped_ranges

if TYPE_CHECKING:
    Key: TypeAlias = int | slice | Tensor | np.ndarray | Sequence[int]

__all__ = ["Images", "IndexedArray", "IndexedImages", "is_memory_mapped", "rows"]


def _positions(index: np.ndarray, key: Key) -> np.ndarray | int:
    """The base rows selected by ``key`` (as torch would select rows of a tensor)."""
    if isinstance(key, Tensor):
        key = key.detach().cpu().numpy()
    if isinstance(key, (int, np.integer)):
        return int(index[int(key)])
    if isinstance(key, slice):
        return index[key]
    return index[np.asarray(key)]


class IndexedArray:
    """Rows ``index`` (int64 (N,)) of a uint8 numpy array ``base`` (N0, C, H, W); indexing
    returns numpy arrays (the diagnosis reads images as numpy)."""

    def __init__(self, base: np.ndarray, index: np.ndarray) -> None:
        self.base, self.index = base, index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    def __getitem__(self, key: Key) -> np.ndarray:
        pos = _positions(self.index, key)
        if isinstance(pos, int):
            return np.array(self.base[pos])
        return np.take(self.base, pos, axis=0)


class IndexedImages:
    """Rows ``index`` (int64 (N,)) of uint8 images ``base`` (N0, C, H, W), read on demand.

    ``len``, ``shape``, ``dtype`` and ``ndim`` describe the rows; ``x[key]`` copies the rows
    ``key`` selects into a uint8 tensor; :meth:`to` keeps the view on the CPU and copies the
    rows to any other device (where training keeps its data).
    """

    def __init__(self, base: Tensor, index: Tensor) -> None:
        if base.dtype != torch.uint8 or base.ndim != 4:
            raise ValueError(
                f"IndexedImages takes uint8 (N, C, H, W) images, got {base.dtype} {tuple(base.shape)}"
            )
        if base.device.type != "cpu":
            raise ValueError(f"IndexedImages reads CPU images, got images on {base.device}")
        self.base = base
        self.index = index.long().cpu()

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"IndexedImages({len(self)} of {len(self.base)} images, {tuple(self.shape[1:])})"

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), *self.base.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def device(self) -> torch.device:
        return self.base.device

    def __getitem__(self, key: Key) -> Tensor:
        pos = _positions(self.index.numpy(), key)
        if isinstance(pos, int):
            return self.base[pos].clone()
        # numpy's take is ~6x faster than torch indexing on CPU (see data.split._take).
        return torch.from_numpy(np.take(self.base.numpy(), pos, axis=0))

    def subset(self, pos: Tensor) -> IndexedImages:
        """The rows at positions ``pos`` (int64) of this view, still a view: nothing is copied."""
        return IndexedImages(self.base, self.index[pos.long().cpu()])

    def materialize(self) -> Tensor:
        """Every row, copied into one uint8 tensor (N, C, H, W)."""
        return self[slice(None)]

    def to(self, device: torch.device | str) -> IndexedImages | Tensor:
        """This view on the CPU; a copy of the rows on any other device."""
        if torch.device(device).type == "cpu":
            return self
        return self.materialize().to(device)

    def numpy(self) -> IndexedArray:
        """The same rows, read as numpy arrays."""
        return IndexedArray(self.base.numpy(), self.index.numpy())


#: A split's training or validation images: a uint8 tensor (N, C, H, W) or a view of one.
Images: TypeAlias = Tensor | IndexedImages


def rows(x: Images, pos: Tensor) -> Images:
    """``x``'s rows at positions ``pos`` (int64): a view of a view, a copy of a tensor's."""
    if isinstance(x, IndexedImages):
        return x.subset(pos)
    return x[pos]


def is_memory_mapped(x: Tensor) -> bool:
    """Whether ``x``'s memory lies in an array the image cache mapped in this process (a view
    of it, then, not a copy in memory)."""
    if x.device.type != "cpu" or x.numel() == 0:
        return False
    ptr = x.untyped_storage().data_ptr()
    return any(start <= ptr < end for start, end in mapped_ranges())
