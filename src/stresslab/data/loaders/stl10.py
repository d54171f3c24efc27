"""STL-10 (labeled part) from its binary files."""

from __future__ import annotations

from pathlib import Path

import torch

from stresslab.data import formats
from stresslab.data.loaders._files import download_archive, pick_folder, require_files, require_root
from stresslab.data.loaders.base import RawDataset, register_dataset
from stresslab.errors import DataError


@register_dataset("stl10")
def load_stl10(root: Path | None, *, download: bool = False) -> RawDataset:
    """STL-10 (Coates et al., 2011), labeled part: 5,000 + 8,000 RGB 96x96 images, 10 classes.

    Reads ``root/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin,
    class_names.txt}``; the unlabeled images are not used.
    """
    from torchvision.datasets import STL10

    base = require_root(root, download, "STL-10", "stl10_binary/")
    names = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt"]
    folder = pick_folder(base, STL10.base_folder, "train_X.bin")
    if download and any(not (folder / n).is_file() for n in names):
        download_archive("STL-10", STL10.url, base, STL10.filename, STL10.tgz_md5)
        folder = base / STL10.base_folder
    require_files(folder, names, "STL-10")
    class_path = folder / "class_names.txt"
    class_names = tuple(line.strip() for line in class_path.read_text().splitlines() if line.strip())
    if not class_names:
        raise DataError(f"{class_path} lists no class names")
    train_x = formats.read_stl10_images(folder / "train_X.bin")
    train_y = formats.read_stl10_labels(folder / "train_y.bin", len(train_x), len(class_names))
    test_x = formats.read_stl10_images(folder / "test_X.bin")
    test_y = formats.read_stl10_labels(folder / "test_y.bin", len(test_x), len(class_names))
    return RawDataset(
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
        class_names,
        source=f"STL-10 binary files in {folder}",
    )
