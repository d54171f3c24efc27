"""A ``.npz`` file's images through the on-disk cache (:mod:`stresslab.data.cache`).

The decoded size is read from the members' ``.npy`` headers without loading them; when the
cache wants the file, ``x_train`` then ``x_test`` are converted a chunk of rows at a time
into the cache, so a float file is never converted whole. A later load maps the cache and
reads only the labels from the file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stresslab.data.cache import CacheSettings, ImageCache
from stresslab.errors import DataError

#: Rows converted per chunk while the cache is built.
CHUNK = 2048
_KEYS = ("x_train", "x_test")

Convert = Callable[[np.ndarray, str, Path], Tensor]  # rows -> uint8 (N, C, H, W), errors name the key


def _member_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """The shape of ``key`` from its ``.npy`` header inside the zip, or None when unreadable."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(f)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return tuple(int(s) for s in shape)


def cached_npz(path: Path, cache: CacheSettings, convert: Convert) -> tuple[Tensor, Tensor] | None:
    """``(train_x, test_x)`` uint8 (N, C, H, W) as views of the cache (built when missing or
    stale), or None when ``cache`` does not want the file (then it is read into memory).

    ``convert`` turns rows of a stored array into uint8 (N, C, H, W) images (and raises
    DataError for bad values). Raises DataError naming the cache folder when it cannot be
    written, or the file when it changes while the cache is built.
    """
    if cache.mode == "never":
        return None
    cache.wants(0)  # checks the mode
    entry = ImageCache(cache, "npz", path, [path], {})
    found = entry.load()
    if found is None:
        found_shapes = [_member_shape(path, key) for key in _KEYS]
        shapes = [s for s in found_shapes if s is not None and len(s) in (3, 4)]
        if len(shapes) != len(_KEYS):
            return None  # the in-memory reader names what is wrong with the file
        sample = [
            convert(np.zeros((1, *s[1:]), np.uint8), k, path) for s, k in zip(shapes, _KEYS, strict=True)
        ]
        if sample[0].shape[1:] != sample[1].shape[1:]:
            return None  # the in-memory reader reports the mismatch
        counts = [s[0] for s in shapes]
        shape = (sum(counts), *(int(v) for v in sample[0].shape[1:]))
        if not cache.wants(int(np.prod(shape, dtype=np.int64))):
            return None
        found = entry.build(shape, lambda rows: _fill(rows, path, convert, counts))  # type: ignore[arg-type]
    n_train = int(found.notes["n_train"])
    x = torch.from_numpy(found.images)
    return x[:n_train], x[n_train:]


def _fill(rows: np.ndarray, path: Path, convert: Convert, counts: list[int]) -> tuple[int, dict[str, int]]:
    """Convert ``x_train`` then ``x_test`` into ``rows``, ``CHUNK`` rows at a time."""
    start = 0
    with np.load(path, allow_pickle=False) as npz:
        for key in _KEYS:
            try:
                arr = npz[key]
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: cannot read {key!r} ({exc})") from exc
            for i in range(0, len(arr), CHUNK):
                part = convert(arr[i : i + CHUNK], key, path).numpy()
                rows[start : start + len(part)] = part
                start += len(part)
            del arr
    return start, {"n_train": counts[0]}
