"""A folder of images, one sub-folder per class (``train/<class>/*``, optional ``test/<class>/*``)."""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from stresslab.data.cache import CacheSettings
from stresslab.data.convert import decode_image, read_header, workers
from stresslab.data.loaders.base import RawDataset, register_dataset
from stresslab.data.loaders.folder_cache import FolderImages, Header, cached_folder
from stresslab.data.sampling import stratified_sample
from stresslab.errors import DataError

logger = logging.getLogger(__name__)

#: Share of an image folder held out as the test set when it has no ``test/`` folder.
HOLDOUT_FRACTION = 0.2
#: Seed of that hold-out split: fixed, so the test set does not move with ``split_seed``.
HOLDOUT_SEED = 0


def _list_class_files(folder: Path) -> dict[str, list[Path]]:
    """``{class name: sorted files}`` for each sub-folder of ``folder``; hidden entries are ignored."""
    classes: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p
            for p in sub.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(sub).parts)
        )
        classes[sub.name] = files
    stray = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if stray:
        logger.warning("ignoring %d files outside class folders in %s", len(stray), folder)
    return classes


def _class_folders(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]] | None]:
    """Files per class under ``root/train`` and ``root/test`` (None without ``test/``), checked."""
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        raise DataError(f"{train_dir} does not exist; image_folder expects {root}/train/<class>/<images>")
    train_files = _list_class_files(train_dir)
    if not train_files:
        raise DataError(f"{train_dir} has no class folders")
    empty = [str(train_dir / c) for c, files in train_files.items() if not files]
    if empty:
        raise DataError(f"class folders without files: {', '.join(empty)}")
    test_files = _list_class_files(test_dir) if test_dir.is_dir() else None
    if test_files is not None:
        unknown = [c for c in test_files if c not in train_files]
        if unknown:
            raise DataError(f"{test_dir} has classes not in {train_dir}: {', '.join(unknown)}")
    return train_files, test_files


@register_dataset("image_folder")
def load_image_folder(
    root: Path | None,
    *,
    skip_bad: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
    cache: CacheSettings | None = None,
) -> RawDataset:
    """Images in ``root/train/<class>/*`` and ``root/test/<class>/*`` (PNG, JPEG, ... via PIL).

    Classes are the sorted sub-folder names of ``train/``. Images are converted to
    ``image_size`` x ``image_size`` (default: the most common size in ``train/``) and to
    ``channels`` (default: 3 unless every image is grayscale). Without a ``test/`` folder a
    stratified 20% of ``train/`` (seed ``HOLDOUT_SEED``) becomes the test set.

    Unreadable, truncated or non-image files raise one DataError listing every bad path, or
    with ``skip_bad=True`` are left out and listed in ``RawDataset.skipped``.

    ``cache`` (default ``auto``) decodes a large folder once into the on-disk cache and
    returns views of it (:mod:`stresslab.data.cache`); a folder that fits stays in memory.
    """
    if root is None:
        raise DataError("image_folder needs `--data-root DIR` with train/<class>/ folders of images")
    train_files, test_files = _class_folders(root)
    class_names = tuple(train_files)
    label_of = {c: i for i, c in enumerate(class_names)}

    def flat(groups: dict[str, list[Path]]) -> tuple[list[Path], list[int]]:
        paths = [p for c in groups for p in groups[c]]
        labels = [label_of[c] for c in groups for _ in groups[c]]
        return paths, labels

    tr_paths, tr_labels = flat(train_files)
    te_paths, te_labels = flat(test_files) if test_files is not None else ([], [])
    all_paths = tr_paths + te_paths

    images = cached_folder(root, all_paths, len(tr_paths), image_size, channels, cache or CacheSettings())
    if not isinstance(images, FolderImages):
        images = _decode_in_memory(all_paths, len(tr_paths), image_size, channels, images)
    if images.errors and not skip_bad:
        raise DataError(
            f"{len(images.errors)} bad image file(s) under {root} "
            "(fix or remove them, or set skip_bad: true):\n  " + "\n  ".join(images.errors)
        )
    skipped = [str(all_paths[i]) for i in images.bad]
    if skipped:
        logger.warning("skipped %d bad image file(s) under %s", len(skipped), root)
    size, n_channels = images.size, images.channels
    n_train = sum(1 for i in images.kept if i < len(tr_paths))
    labels = torch.tensor([(tr_labels + te_labels)[i] for i in images.kept], dtype=torch.long)
    train_x, train_y = images.x[:n_train], labels[:n_train]
    if len(train_y) == 0:
        raise DataError(f"no readable training images under {root / 'train'}")
    # Classes left with few or no training images are reported by load_split (Split.warnings).
    source = f"image folder {root} ({len(class_names)} classes, {size[0]}x{size[1]}, {n_channels} channel(s))"
    if test_files is not None:
        test_x, test_y = images.x[n_train:], labels[n_train:]
    else:
        n_held = round(len(train_y) * HOLDOUT_FRACTION)
        held = stratified_sample(train_y, n_held, seed=HOLDOUT_SEED, keep_one_out=True)
        keep = torch.ones(len(train_y), dtype=torch.bool)
        keep[held] = False
        test_x, test_y = train_x[held], train_y[held]
        train_x, train_y = train_x[keep], train_y[keep]
        source += (
            f"; no test/ folder: a stratified {HOLDOUT_FRACTION:.0%} of train/ (seed {HOLDOUT_SEED}) "
            "is held out as the test set"
        )
    return RawDataset(train_x, train_y, test_x, test_y, class_names, source=source, skipped=skipped)


Decoded = dict[int, np.ndarray | str]


def _decode_all(
    paths: list[Path],
    n_train: int,
    image_size: int | None,
    channels: int | None,
    headers: list[Header] | None = None,
) -> tuple[list[Header], Decoded, tuple[int, int], int]:
    """Read every header, pick the size (width, height) and channel count, decode every
    readable file (threads). Returns the headers (a string: why a file is bad), the decoded
    HxWxC uint8 arrays (or error strings) by position in ``paths``, the size and channels.
    The first ``n_train`` paths are the training files the defaults are taken from."""
    with ThreadPoolExecutor(workers()) as pool:
        if headers is None:
            headers = list(pool.map(read_header, paths))
        good_train = [h for h in headers[:n_train] if not isinstance(h, str)]
        if image_size is not None:
            size = (image_size, image_size)
        elif good_train:
            size = Counter(h[0] for h in good_train).most_common(1)[0][0]
        else:
            size = (1, 1)  # every training file is bad; the caller's error says so
        n_channels = channels or (1 if good_train and all(h[1] for h in good_train) else 3)
        todo = [i for i, h in enumerate(headers) if not isinstance(h, str)]
        decoded: Decoded = dict(
            zip(todo, pool.map(lambda i: decode_image(paths[i], size, n_channels), todo), strict=True)
        )
    return headers, decoded, size, n_channels


def _decode_in_memory(
    paths: list[Path],
    n_train: int,
    image_size: int | None,
    channels: int | None,
    headers: list[Header] | None,
) -> FolderImages:
    """Every readable file of ``paths`` decoded into one uint8 (N, C, H, W) tensor in memory
    (``headers``: the files' headers where already read)."""
    headers, decoded, size, n_channels = _decode_all(paths, n_train, image_size, channels, headers)
    bad = [i for i, h in enumerate(headers) if isinstance(h, str)]
    bad += [i for i, d in decoded.items() if isinstance(d, str)]
    errors = [h for h in headers if isinstance(h, str)] + [d for d in decoded.values() if isinstance(d, str)]
    kept = [i for i in range(len(paths)) if not isinstance(decoded.get(i, "bad"), str)]
    arrays = [decoded[i] for i in kept]
    if arrays:
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    else:
        x = torch.empty(0, n_channels, size[1], size[0], dtype=torch.uint8)
    return FolderImages(x, kept, errors, bad, size, n_channels)
