"""Split assembly: :func:`load_split`, the one entry point the runner calls.

A loader (registered in :data:`~stresslab.data.loaders.DATASETS`) returns a dataset's
official train and test sets as a :class:`~stresslab.data.loaders.RawDataset`;
:func:`load_split` passes the loader only the options it declares, carves a fixed-seed
validation split out of the official training set, takes seeded subsets, converts size and
channels if asked, computes the channel statistics the model's Normalize layer uses and
collects the warnings the user must see (``Split.warnings``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stresslab.data.base import DatasetInfo, Split
from stresslab.data.cache import CacheSettings
from stresslab.data.convert import convert_images
from stresslab.data.coverage import coverage_warnings
from stresslab.data.hierarchy import check_coarse, coarse_map
from stresslab.data.indexed import Images, IndexedImages, is_memory_mapped
from stresslab.data.loaders import DATASETS, DatasetLoader, RawDataset
from stresslab.data.loaders.base import SPLIT_OPTIONS
from stresslab.data.sampling import stratified_sample
from stresslab.data.stats import channel_stats, plain_background
from stresslab.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def _check_raw(raw: RawDataset, name: str) -> None:
    """A loader's output must honour the data contract before anything else touches it."""
    for part in ("train", "test"):
        x, y = getattr(raw, f"{part}_x"), getattr(raw, f"{part}_y")
        if x.dtype != torch.uint8 or x.ndim != 4 or y.dtype != torch.long or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"dataset {name!r}: {part} set should be uint8 (N, C, H, W) images with int64 (N,) "
                f"labels, got {x.dtype} {tuple(x.shape)} and {y.dtype} {tuple(y.shape)}"
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(raw.class_names)):
            raise DataError(
                f"dataset {name!r}: {part} labels {int(y.min())}..{int(y.max())} do not fit "
                f"{len(raw.class_names)} class names"
            )
    if raw.train_x.shape[1:] != raw.test_x.shape[1:] and len(raw.test_x):
        raise DataError(
            f"dataset {name!r}: train images {tuple(raw.train_x.shape[1:])} and test images "
            f"{tuple(raw.test_x.shape[1:])} differ"
        )


def _take(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` along the first axis; numpy's take is ~6x faster than torch indexing on CPU.

    ``x`` itself when ``index`` is every row in order (a whole test set), so images backed
    by the on-disk cache stay a memory map instead of being copied into memory."""
    if len(index) == len(x) and torch.equal(index, torch.arange(len(x))):
        return x
    return torch.from_numpy(np.take(x.numpy(), index.numpy(), axis=0))


def _kept(x: Tensor, index: Tensor, size: tuple[int, int] | None, channels: int | None) -> Images:
    """The rows ``index`` of ``x`` (a training set) as uint8 (N, C, H, W) of ``size`` and
    ``channels``: a view (:class:`IndexedImages`) when ``x`` is a memory map of the image cache
    that needs no conversion, so the training set is read by batches, never gathered."""
    same = (size is None or tuple(x.shape[2:]) == tuple(size)) and channels in (None, x.shape[1])
    whole = len(index) == len(x) and torch.equal(index, torch.arange(len(x)))
    if same and not whole and is_memory_mapped(x):
        return IndexedImages(x, index)
    return convert_images(_take(x, index), size=size, channels=channels)


def _check_count(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")


def _loader_options(loader: DatasetLoader, requested: dict[str, Any]) -> dict[str, Any]:
    """The options ``loader`` declares, from ``requested``; ConfigError for one it ignores but is set.

    ``image_size`` and ``channels`` are never refused: :func:`load_split` applies them to
    every dataset, and passes them on only to loaders that use them while decoding.
    """
    options: dict[str, Any] = {}
    for name, value in requested.items():
        if name in loader.options:
            options[name] = value
        elif name not in SPLIT_OPTIONS and value not in (None, False):
            raise ConfigError(loader.refusal(name))
    return options


def load_split(
    dataset: str,
    *,
    root: str | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 42,
    train_subset: int | None = None,
    test_subset: int | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    skip_bad: bool = False,
    download: bool = False,
    drop_train_indices: Sequence[int] = (),
    relabel: Mapping[int, int] | None = None,
    class_names: Sequence[str] | None = None,
    crop_pct: float | None = None,
    cache: CacheSettings | None = None,
) -> Split:
    """Load a registered dataset and split it into train / validation / test.

    Args:
        dataset: a name in :data:`DATASETS` (``fashion_mnist``, ``cifar10``, ...).
        root: folder (or ``.npz`` file) with the data; ``None`` for the loader's defaults.
        val_fraction: share of the official training set held out for validation, in
            [0, 1); 0 gives an empty validation set. Stratified by class.
        split_seed: seed of the validation split and of the subsets; same arguments give
            the identical split every time.
        train_subset: keep this many training images (seeded, stratified) after the
            validation split; ``None`` keeps all.
        test_subset: keep this many test images (seeded, stratified so every class appears
            when possible); ``None`` keeps all.
        image_size: resize to ``image_size`` x ``image_size`` pixels (bilinear, antialiased).
        channels: 1 or 3; 1 -> 3 repeats the channel, 3 -> 1 takes the luminance.
        skip_bad: leave out unreadable files (``image_folder``) instead of failing; they
            are listed in ``Split.skipped``. Only for datasets whose loader takes it.
        download: let the loader download the dataset where it is missing (needs a network).
            Only for datasets whose loader takes it.
        drop_train_indices, relabel: official training indices to leave out, and official
            training index -> new class; applied after the split and subsets (kept as they were).
        class_names, crop_pct: a trained model's classes that class folders are matched to by
            name, and its resize-and-centre-crop preprocessing (``image_folder``); only for
            datasets whose loader takes them.
        cache: whether and where large datasets are decoded once into the on-disk uint8
            cache (:mod:`stresslab.data.cache`); ``None`` is ``auto`` in the default folder.
            Setting it for a dataset whose loader does not cache is a ConfigError.

    Returns:
        A :class:`Split` of uint8 images (N, C, H, W) and int64 labels, with ``*_index``
        the positions in the official training / test sets, ``info.mean`` / ``info.std``
        the per-channel statistics of the training images in [0, 1], superclass labels
        (``*_coarse``, ``info.coarse_names``, ``info.coarse_of``) for datasets that have
        them (CIFAR-100), taken through the same split and subsets, and ``warnings``
        (each also logged) for what makes the numbers untrustworthy: test classes absent
        from training, classes with few training images, constant channels.

    Raises:
        ConfigError: an unknown dataset, a bad value, or ``skip_bad`` / ``download`` set for
            a dataset that does not use it (the message names the option and the dataset).
        DataError: missing or corrupt data (the message names the file).
    """
    loader = DATASETS.get(dataset)
    _check_arguments(val_fraction, train_subset, test_subset, image_size, channels)
    given = {
        "download": download,
        "skip_bad": skip_bad,
        "image_size": image_size,
        "channels": channels,
        "class_names": class_names,
        "crop_pct": crop_pct,
        "cache": None if cache == CacheSettings() else cache,
    }
    options = _loader_options(loader, given)
    raw = loader(Path(root).expanduser() if root is not None else None, **options)
    _check_raw(raw, dataset)
    has_coarse = check_coarse(raw, dataset)
    train_index, val_index, test_index, notes = _split_indices(
        raw.train_y, raw.test_y, val_fraction, split_seed, train_subset, test_subset
    )
    raw, train_index, val_index = _edited(raw, train_index, val_index, drop_train_indices, relabel, notes)

    size = (image_size, image_size) if image_size is not None else None
    train_x, val_x, test_x = _converted(raw, (train_index, val_index, test_index), size, channels)
    stats_x = train_x if len(train_x) else test_x  # a test folder alone: the test images'
    info, warnings = _dataset_info(dataset, raw, stats_x, notes, (train_index, test_index))
    indices = (train_index, val_index, test_index)
    info, coarse = _superclasses(dataset, raw, info, indices) if has_coarse else (info, (None, None, None))
    return Split(
        info=info,
        train_x=train_x,
        train_y=raw.train_y[train_index],
        val_x=val_x,
        val_y=raw.train_y[val_index],
        test_x=test_x,
        test_y=raw.test_y[test_index],
        train_index=train_index,
        val_index=val_index,
        test_index=test_index,
        skipped=list(raw.skipped),
        warnings=warnings,
        train_coarse=coarse[0],
        val_coarse=coarse[1],
        test_coarse=coarse[2],
    )


def _edited(
    raw: RawDataset,
    train_index: Tensor,
    val_index: Tensor,
    drop: Sequence[int],
    relabel: Mapping[int, int] | None,
    notes: list[str],
) -> tuple[RawDataset, Tensor, Tensor]:
    """The training and validation positions without ``drop`` (official training indices)
    and the dataset with ``relabel`` (official training index -> class) applied; notes each."""
    if len(drop):
        out = _checked_indices(drop, len(raw.train_y), "data.drop_train_indices")
        train_index = train_index[~torch.isin(train_index, out)]
        val_index = val_index[~torch.isin(val_index, out)]
        notes.append(f"{len(out)} training images left out (data.drop_train_indices)")
    if relabel:
        raw = dataclasses.replace(raw, train_y=_relabeled(raw.train_y, relabel, len(raw.class_names)))
        notes.append(f"{len(relabel)} training labels changed (data.relabel)")
    return raw, train_index, val_index


def _checked_indices(indices: Sequence[int], n: int, field: str) -> Tensor:
    """``indices`` as a unique int64 tensor; ConfigError naming ``field`` for one outside 0..n-1."""
    out = torch.as_tensor(list(indices), dtype=torch.long).unique()
    bad = out[(out < 0) | (out >= n)]
    if len(bad):
        raise ConfigError(f"{field}: index {int(bad[0])} is outside the training set (0..{n - 1})")
    return out


def _relabeled(y: Tensor, relabel: Mapping[int, int], num_classes: int) -> Tensor:
    """A copy of the official training labels ``y`` with ``relabel`` (index -> class) applied."""
    idx = _checked_indices(list(relabel), len(y), "data.relabel")
    new = torch.as_tensor([relabel[int(i)] for i in idx], dtype=torch.long)
    bad = new[(new < 0) | (new >= num_classes)]
    if len(bad):
        raise ConfigError(f"data.relabel: class {int(bad[0])} is not one of the {num_classes} classes")
    out = y.clone()
    out[idx] = new
    return out


def _check_arguments(
    val_fraction: float,
    train_subset: int | None,
    test_subset: int | None,
    image_size: int | None,
    channels: int | None,
) -> None:
    """ConfigError naming the first of :func:`load_split`'s arguments out of range."""
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0 <= val_fraction < 1
    ):
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    _check_count(train_subset, "train_subset")
    _check_count(test_subset, "test_subset")
    _check_count(image_size, "image_size")
    if channels is not None and channels not in (1, 3):
        raise ConfigError(f"channels must be 1, 3 or None, got {channels!r}")


def _split_indices(
    full_y: Tensor,
    test_y: Tensor,
    val_fraction: float,
    split_seed: int,
    train_subset: int | None,
    test_subset: int | None,
) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    """Positions in the official training set of the training and validation images, in the
    official test set of the test images (int64), and a note on each split or subset made."""
    notes: list[str] = []
    n = len(full_y)
    n_val = 0 if val_fraction == 0 else max(1, round(n * val_fraction)) if n >= 2 else 0
    val_index = stratified_sample(full_y, n_val, seed=split_seed, keep_one_out=True)
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[val_index] = True
    train_index = torch.nonzero(~is_val).flatten()
    notes.append(f"validation: {len(val_index)} of {n} training images (stratified, seed {split_seed})")

    if train_subset is not None:
        if train_subset >= len(train_index):
            logger.info("train_subset=%d keeps all %d training images", train_subset, len(train_index))
        else:
            pick = stratified_sample(full_y[train_index], train_subset, seed=split_seed + 1)
            train_index = train_index[pick]
            notes.append(f"training subset: {len(train_index)} images (seed {split_seed + 1})")
    test_index = torch.arange(len(test_y))
    if test_subset is not None:
        if test_subset >= len(test_index):
            logger.info("test_subset=%d keeps all %d test images", test_subset, len(test_index))
        else:
            test_index = stratified_sample(test_y, test_subset, seed=split_seed + 2)
            notes.append(f"test subset: {len(test_index)} of {len(test_y)} images (seed {split_seed + 2})")
    return train_index, val_index, test_index, notes


def _converted(
    raw: RawDataset,
    indices: tuple[Tensor, Tensor, Tensor],
    size: tuple[int, int] | None,
    channels: int | None,
) -> tuple[Images, Images, Tensor]:
    """The training, validation and test images at ``indices`` (positions in the official
    training, training and test sets) as uint8 (N, C, H, W) of ``size`` and ``channels``.
    Only the images kept are converted: subsets of large sets stay cheap. Training and
    validation images of the on-disk cache stay views of it (:func:`_kept`)."""
    train_index, val_index, test_index = indices
    return (
        _kept(raw.train_x, train_index, size, channels),
        _kept(raw.train_x, val_index, size, channels),
        convert_images(_take(raw.test_x, test_index), size=size, channels=channels),
    )


def _dataset_info(
    dataset: str, raw: RawDataset, train_x: Images, notes: list[str], kept: tuple[Tensor, Tensor]
) -> tuple[DatasetInfo, list[str]]:
    """The split's :class:`DatasetInfo` (shape and per-channel statistics of ``train_x``, uint8
    N x C x H x W: the test images where there is no training set) and its warnings, each
    logged: classes the kept training and test images (``kept``: their positions in the
    official sets) do not cover, and a constant channel (whose std is then set to 1.0).
    The plain background is the loader's where it declares one, else read from ``train_x``'s
    borders (:func:`~stresslab.data.stats.plain_background`)."""
    train_index, test_index = kept
    if len(train_index):
        train_y, test_y = raw.train_y[train_index], raw.test_y[test_index]
        warnings = coverage_warnings(train_y, test_y, raw.class_names, dataset)
    else:  # a test set alone, for a trained model: nothing to compare the test classes with
        notes.append("no training images: the channel statistics are the test images'")
        warnings = []
    mean, std = channel_stats(train_x)
    if min(std) == 0.0:
        warnings.append(f"{dataset}: a channel of the training images is constant; its std is set to 1.0.")
        std = tuple(s if s > 0 else 1.0 for s in std)
    for warning in warnings:
        logger.warning("%s", warning)
    background = raw.background
    if background is None and (background := plain_background(train_x)) is not None:
        notes.append(f"plain background {background:g}, read from the images' borders")
    info = DatasetInfo(
        name=dataset,
        class_names=tuple(raw.class_names),
        channels=int(train_x.shape[1]),
        height=int(train_x.shape[2]),
        width=int(train_x.shape[3]),
        mean=mean,
        std=std,
        source="; ".join([raw.source, *notes]),
        background=background,
    )
    return info, warnings


def _superclasses(
    dataset: str, raw: RawDataset, info: DatasetInfo, indices: tuple[Tensor, Tensor, Tensor]
) -> tuple[DatasetInfo, tuple[Tensor | None, ...]]:
    """``info`` with the superclass names and the fine -> coarse map, and the superclass
    labels of the training, validation and test images at ``indices`` (train, val, test)."""
    assert raw.train_coarse is not None and raw.test_coarse is not None
    fine_all, coarse_all = (
        torch.cat([raw.train_y, raw.test_y]),
        torch.cat([raw.train_coarse, raw.test_coarse]),
    )
    info = dataclasses.replace(
        info,
        coarse_names=tuple(raw.coarse_names or ()),
        coarse_of=coarse_map(fine_all, coarse_all, len(raw.class_names), dataset),
    )
    train_index, val_index, test_index = indices
    return info, (raw.train_coarse[train_index], raw.train_coarse[val_index], raw.test_coarse[test_index])
