"""An image folder decoded through the on-disk cache (:mod:`stresslab.data.cache`), in chunks.

The headers of every file are read first (to pick the size and channels, as in memory);
then the files are decoded a chunk at a time (threads) straight into the cache's rows, so
peak memory holds one chunk of images whatever the folder's size. A later load with the
same files and settings reads no image at all: it maps the cached array.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stresslab.data.cache import CacheSettings, ImageCache
from stresslab.data.convert import decode_image, read_header, workers

#: Files decoded per chunk: bounds the decoded images held in memory at once.
CHUNK = 512


@dataclass
class FolderImages:
    """Readable images of a folder's files: ``x`` uint8 (N, C, H, W) (a view of the cache),
    ``kept`` their positions in the file list, ``errors`` why each other file is bad and
    ``bad`` those files' positions (unreadable headers first, as in memory), ``size`` (W, H)
    and ``channels`` as decoded."""

    x: Tensor
    kept: list[int]
    errors: list[str]
    bad: list[int]
    size: tuple[int, int]
    channels: int


def choose_size(
    headers: Sequence[Header], n_train: int, image_size: int | None, channels: int | None
) -> tuple[tuple[int, int], int]:
    """Size (W, H) and channel count: ``image_size`` and ``channels`` where given, else the
    most common size among the first ``n_train`` readable headers (the training files) and 1
    channel when all of them are grayscale, else 3. (1, 1) when none is readable."""
    good_train = [h for h in headers[:n_train] if not isinstance(h, str)]
    if image_size is not None:
        size = (image_size, image_size)
    elif good_train:
        size = Counter(h[0] for h in good_train).most_common(1)[0][0]
    else:
        size = (1, 1)
    n_channels = channels or (1 if good_train and all(h[1] for h in good_train) else 3)
    return size, n_channels


Header = tuple[tuple[int, int], bool] | str  # (size (W, H), grayscale), or why the file is bad


def cached_folder(
    root: Path,
    paths: list[Path],
    n_train: int,
    image_size: int | None,
    channels: int | None,
    crop_pct: float | None,
    cache: CacheSettings,
) -> FolderImages | list[Header] | None:
    """The folder's images from the cache (built when missing or stale); else what to decode
    in memory with: None for ``never``, or the headers read (``auto`` and a folder that fits).

    Raises DataError naming the folder when the cache cannot be written or a file changes
    while it is decoded (see :meth:`ImageCache.build`).
    """
    if cache.mode == "never":
        return None
    cache.wants(0)  # checks the mode
    entry = ImageCache(
        cache, "folder", root, paths, {"image_size": image_size, "channels": channels, "crop_pct": crop_pct}
    )
    found = entry.load()
    if found is None:
        with ThreadPoolExecutor(workers()) as pool:
            headers = list(pool.map(read_header, paths))
        size, n_channels = choose_size(headers, n_train, image_size, channels)
        good = [i for i, h in enumerate(headers) if not isinstance(h, str)]
        shape = (len(good), n_channels, size[1], size[0])
        if not cache.wants(int(np.prod(shape, dtype=np.int64))):
            return headers
        bad = [i for i, h in enumerate(headers) if isinstance(h, str)]
        errors = [h for h in headers if isinstance(h, str)]
        found = entry.build(
            shape, lambda rows: _fill(rows, paths, good, (size, n_channels, crop_pct), (bad, errors))
        )
    notes = found.notes
    return FolderImages(
        x=torch.from_numpy(found.images),
        kept=list(notes["kept"]),
        errors=list(notes["errors"]),
        bad=list(notes["bad"]),
        size=(int(notes["size"][0]), int(notes["size"][1])),
        channels=int(notes["channels"]),
    )


def _fill(
    rows: np.ndarray,
    paths: list[Path],
    good: list[int],
    decoding: tuple[tuple[int, int], int, float | None],
    header_bad: tuple[list[int], list[str]],
) -> tuple[int, dict[str, Any]]:
    """Decode ``paths[good]`` into ``rows`` a chunk at a time; returns the rows used and the
    notes (positions kept, positions and errors of bad files after ``header_bad``'s, size,
    channels); ``decoding`` is (size (W, H), channels, crop_pct)."""
    size, channels, crop_pct = decoding
    kept: list[int] = []
    used = 0
    bad, errors = list(header_bad[0]), list(header_bad[1])
    with ThreadPoolExecutor(workers()) as pool:
        for start in range(0, len(good), CHUNK):
            todo = good[start : start + CHUNK]
            for i, arr in zip(
                todo, pool.map(lambda i: decode_image(paths[i], size, channels, crop_pct), todo), strict=True
            ):
                if isinstance(arr, str):
                    errors.append(arr)
                    bad.append(i)
                    continue
                rows[used] = arr.transpose(2, 0, 1)
                kept.append(i)
                used += 1
    return used, {"kept": kept, "bad": bad, "errors": errors, "size": list(size), "channels": channels}
