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
    parts = [formats.read_cifar_batch(folder / f, label_key) for f in train_files]
    test_x, test_y = formats.read_cifar_batch(folder / test_file, label_key)
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    return RawDataset(
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
        class_names,
        source=f"{name} python batches in {folder}",
    )


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
    """CIFAR-100 (Krizhevsky, 2009): 50,000 + 10,000 RGB 32x32 images, 100 fine classes.

    Reads ``root/cifar-100-python/{train, test, meta}`` with a restricted unpickler.
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
    )
