"""CIFAR-10 and CIFAR-100 from their python batches, read with a restricted unpickler."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from stresslab.data import formats
from stresslab.data.loaders._files import download_archive, pick_folder, require_files, require_root
from stresslab.data.loaders.base import RawDataset, register_dataset


def _cifar(
    root: Path | None,
    download: bool,
    *,
    name: str,
    train_files: Sequence[str],
    test_file: str,
    meta_file: str,
    label_key: str,
    names_key: str,
    coarse_key: str | None = None,
    coarse_names_key: str | None = None,
) -> RawDataset:
    from torchvision.datasets import CIFAR10, CIFAR100

    spec = CIFAR10 if name == "CIFAR-10" else CIFAR100
    base = require_root(root, download, name, f"{spec.base_folder}/")
    folder = pick_folder(base, spec.base_folder, meta_file)
    needed = [*train_files, test_file, meta_file]
    if download and any(not (folder / n).is_file() for n in needed):
        # Download and extract only: torchvision's CIFAR classes would unpickle the files
        # with the default (code-executing) unpickler.
        download_archive(name, spec.url, base, spec.filename, spec.tgz_md5)
        folder = base / spec.base_folder
    require_files(folder, needed, name)
    class_names = tuple(formats.read_name_list(folder / meta_file, names_key))
    keys = (label_key,) if coarse_key is None else (label_key, coarse_key)
    parts = [formats.read_cifar_labelled(folder / f, keys) for f in train_files]
    test_x, test_labels = formats.read_cifar_labelled(folder / test_file, keys)
    train_x = np.concatenate([p[0] for p in parts])
    train_labels = [np.concatenate([p[1][k] for p in parts]) for k in range(len(keys))]
    raw = RawDataset(
        torch.from_numpy(train_x),
        torch.from_numpy(train_labels[0]),
        torch.from_numpy(test_x),
        torch.from_numpy(test_labels[0]),
        class_names,
        source=f"{name} python batches in {folder}",
    )
    if coarse_key is not None and coarse_names_key is not None:
        raw.train_coarse = torch.from_numpy(train_labels[1])
        raw.test_coarse = torch.from_numpy(test_labels[1])
        raw.coarse_names = tuple(formats.read_name_list(folder / meta_file, coarse_names_key))
    return raw


@register_dataset("cifar10")
def load_cifar10(root: Path | None, *, download: bool = False) -> RawDataset:
    """CIFAR-10 (Krizhevsky, 2009): 50,000 + 10,000 RGB 32x32 images, 10 classes.

    Reads ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` with a
    restricted unpickler.
    """
    return _cifar(
        root,
        download,
        name="CIFAR-10",
        train_files=[f"data_batch_{i}" for i in range(1, 6)],
        test_file="test_batch",
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
    )


@register_dataset("cifar100")
def load_cifar100(root: Path | None, *, download: bool = False) -> RawDataset:
    """CIFAR-100 (Krizhevsky, 2009): 50,000 + 10,000 RGB 32x32 images, 100 fine classes
    in 20 superclasses of 5.

    Reads ``root/cifar-100-python/{train, test, meta}`` with a restricted unpickler: the
    fine labels (``fine_labels``, names ``fine_label_names``) are the classes, and the
    superclasses (``coarse_labels``, names ``coarse_label_names``) ride along as
    ``train_coarse`` / ``test_coarse``.
    """
    return _cifar(
        root,
        download,
        name="CIFAR-100",
        train_files=["train"],
        test_file="test",
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        coarse_key="coarse_labels",
        coarse_names_key="coarse_label_names",
    )
