"""A folder of images, one sub-folder per class (``train/<class>/*``, optional ``test/<class>/*``;
or test images alone: ``test/<class>/*`` or ``<class>/*``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from stresslab.data.cache import CacheSettings
from stresslab.data.convert import decode_image, read_header, workers
from stresslab.data.loaders._class_names import match_folders
from stresslab.data.loaders.base import RawDataset, register_dataset
from stresslab.data.loaders.folder_cache import FolderImages, Header, cached_folder, choose_size
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


def _checked_classes(folder: Path, what: str) -> dict[str, list[Path]]:
    """Files per class under ``folder``; DataError for no class folders or an empty one."""
    files = _list_class_files(folder)
    if not files:
        raise DataError(f"{folder} has no class folders; {what}")
    empty = [str(folder / c) for c, paths in files.items() if not paths]
    if empty:
        raise DataError(f"class folders without files: {', '.join(empty)}")
    return files


def _class_folders(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]] | None]:
    """Files per class of the training and the test images, checked.

    Layouts: ``root/train/<class>/`` with an optional ``root/test/<class>/`` (no ``test/``:
    ``None``); ``root/test/<class>/`` alone; or ``root/<class>/``, a test folder. The last two
    give no training files (``{}``): a folder of test images for a trained model.
    """
    train_dir, test_dir = root / "train", root / "test"
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; image_folder expects {root}/train/<class>/<images>")
    layout = "expected train/<class>/, test/<class>/ or <class>/ folders of images"
    if not train_dir.is_dir():
        return {}, _checked_classes(test_dir if test_dir.is_dir() else root, layout)
    train_files = _checked_classes(train_dir, layout)
    test_files = _list_class_files(test_dir) if test_dir.is_dir() else None
    return train_files, test_files


def _labels_of(
    root: Path,
    train_files: dict[str, list[Path]],
    test_files: dict[str, list[Path]] | None,
    class_names: Sequence[str] | None,
) -> tuple[tuple[str, ...], dict[str, int], dict[str, int]]:
    """The class names and ``{folder: label}`` of the training and of the test folders.

    With ``class_names`` (a model's classes) each folder is matched to them by name (see
    :func:`match_folders`); without, the classes are the sorted training folders (the test
    folders where there is no training set) and a test class not among them is a DataError.
    """
    test_dir = root / "test" if (root / "test").is_dir() else root
    test_folders = list(test_files or {})
    if class_names is not None:
        names = tuple(class_names)
        train_of = match_folders(list(train_files), names, root / "train") if train_files else {}
        return names, train_of, match_folders(test_folders, names, test_dir)
    names = tuple(train_files) if train_files else tuple(test_folders)
    label_of = {c: i for i, c in enumerate(names)}
    unknown = [c for c in test_folders if c not in label_of]
    if unknown:
        raise DataError(f"{test_dir} has classes not in {root / 'train'}: {', '.join(unknown)}")
    return names, label_of, label_of


def is_image_folder(root: Path) -> bool:
    """Whether ``root`` looks like an image folder: a ``train/`` or ``test/`` folder of class
    folders, or class folders holding image files (by their suffix) directly."""
    from PIL import Image

    if (root / "train").is_dir() or (root / "test").is_dir():
        return True
    suffixes = set(Image.registered_extensions())
    subs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.is_dir() else []
    return any(f.suffix.lower() in suffixes for sub in subs for f in sub.iterdir() if f.is_file())


@register_dataset("image_folder")
def load_image_folder(
    root: Path | None,
    *,
    skip_bad: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
    class_names: Sequence[str] | None = None,
    crop_pct: float | None = None,
    cache: CacheSettings | None = None,
) -> RawDataset:
    """Images in ``root/train/<class>/*`` and ``root/test/<class>/*`` (PNG, JPEG, ... via PIL).

    Classes are the sorted sub-folder names of ``train/``, or with ``class_names`` (a trained
    model's classes, in label order) those names, each folder matched to one by name (a ``/``
    in a class name is written ``_`` in a folder name; see :func:`match_folders`). Images are
    converted to ``image_size`` x ``image_size`` (default: the most common size in
    ``train/``) and to ``channels`` (default: 3 unless every image is grayscale); with
    ``crop_pct`` in (0, 1], the shorter side is resized to ``image_size / crop_pct`` and the
    centre ``image_size`` x ``image_size`` cropped, the aspect ratio kept (as timm's eval
    transform). Without a ``test/`` folder a stratified 20% of ``train/`` (seed
    ``HOLDOUT_SEED``) becomes the test set. Without a ``train/`` folder, ``root/test/<class>/``
    or ``root/<class>/`` is the test set and the training set is empty (0 images): a folder
    of test images for a trained model.

    Unreadable, truncated or non-image files raise one DataError listing every bad path, or
    with ``skip_bad=True`` are left out and listed in ``RawDataset.skipped``. ``cache``:
    whether and where the decoded images are kept on disk (:mod:`stresslab.data.cache`).
    """
    if root is None:
        raise DataError("image_folder needs `--data-root DIR` with train/<class>/ folders of images")
    if crop_pct is not None and (image_size is None or not 0 < crop_pct <= 1):
        raise DataError(f"crop_pct={crop_pct!r} needs image_size and a value in (0, 1]")
    train_files, test_files = _class_folders(root)
    names, train_of, test_of = _labels_of(root, train_files, test_files, class_names)

    def flat(groups: dict[str, list[Path]], label_of: dict[str, int]) -> tuple[list[Path], list[int]]:
        paths = [p for c in groups for p in groups[c]]
        labels = [label_of[c] for c in groups for _ in groups[c]]
        return paths, labels

    tr_paths, tr_labels = flat(train_files, train_of)
    te_paths, te_labels = flat(test_files, test_of) if test_files is not None else ([], [])
    all_paths = tr_paths + te_paths
    # Without training files the defaults (size, channels) come from the test files.
    n_first = len(tr_paths) or len(te_paths)
    images = cached_folder(root, all_paths, n_first, image_size, channels, crop_pct, cache or CacheSettings())
    if not isinstance(images, FolderImages):
        images = _decode_in_memory(all_paths, n_first, image_size, channels, crop_pct, images)
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
    if len(train_y) == 0 and train_files:
        raise DataError(f"no readable training images under {root / 'train'}")
    # Classes left with few or no training images are reported by load_split (Split.warnings).
    source = f"image folder {root} ({len(names)} classes, {size[0]}x{size[1]}, {n_channels} channel(s))"
    if crop_pct is not None:
        source += f", shorter side resized to {size[0] / crop_pct:.0f} px and centre-cropped"
    if not train_files:
        source += "; test images only, no training set"
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
    return RawDataset(train_x, train_y, test_x, test_y, names, source=source, skipped=skipped)


Decoded = dict[int, np.ndarray | str]


def _decode_all(
    paths: list[Path],
    n_train: int,
    image_size: int | None,
    channels: int | None,
    crop_pct: float | None = None,
    headers: list[Header] | None = None,
) -> tuple[list[Header], Decoded, tuple[int, int], int]:
    """Read every header, pick the size (width, height) and channel count, decode every
    readable file (threads). Returns the headers (a string: why a file is bad), the decoded
    HxWxC uint8 arrays (or error strings) by position in ``paths``, the size and channels.
    The first ``n_train`` paths are the training files the defaults are taken from."""
    with ThreadPoolExecutor(workers()) as pool:
        if headers is None:
            headers = list(pool.map(read_header, paths))
        size, n_channels = choose_size(headers, n_train, image_size, channels)
        todo = [i for i, h in enumerate(headers) if not isinstance(h, str)]

        def decode(i: int) -> np.ndarray | str:
            return decode_image(paths[i], size, n_channels, crop_pct)

        decoded: Decoded = dict(zip(todo, pool.map(decode, todo), strict=True))
    return headers, decoded, size, n_channels


def _decode_in_memory(
    paths: list[Path],
    n_train: int,
    image_size: int | None,
    channels: int | None,
    crop_pct: float | None,
    headers: list[Header] | None,
) -> FolderImages:
    """Every readable file of ``paths`` decoded into one uint8 (N, C, H, W) tensor in memory
    (``headers``: the files' headers where already read)."""
    headers, decoded, size, n_channels = _decode_all(paths, n_train, image_size, channels, crop_pct, headers)
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
