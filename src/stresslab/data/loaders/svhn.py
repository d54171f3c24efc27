"""SVHN cropped digits from its MATLAB ``.mat`` files."""

from __future__ import annotations

from pathlib import Path

import torch

from stresslab.data import formats
from stresslab.data.loaders._files import require_files, require_root
from stresslab.data.loaders.base import RawDataset, register_dataset
from stresslab.errors import DataError


@register_dataset("svhn")
def load_svhn(root: Path | None, *, download: bool = False) -> RawDataset:
    """SVHN cropped digits (Netzer et al., 2011): 73,257 + 26,032 RGB 32x32 images, digits 0-9.

    Reads ``root/train_32x32.mat`` and ``root/test_32x32.mat`` (the ``extra`` set is not used).
    """
    from torchvision.datasets import SVHN

    folder = require_root(root, download, "SVHN", "train_32x32.mat and test_32x32.mat")
    splits = {"train": SVHN.split_list["train"], "test": SVHN.split_list["test"]}
    if download:
        from torchvision.datasets.utils import download_url

        for url, filename, md5 in splits.values():
            if not (folder / filename).is_file():
                try:
                    download_url(url, str(folder), filename=filename, md5=md5)
                except Exception as exc:  # network and checksum failures come in many types
                    raise DataError(f"downloading SVHN into {folder} failed: {exc}") from exc
    require_files(folder, [s[1] for s in splits.values()], "SVHN")
    train_x, train_y = formats.read_svhn_mat(folder / splits["train"][1])
    test_x, test_y = formats.read_svhn_mat(folder / splits["test"][1])
    return RawDataset(
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
        tuple(str(d) for d in range(10)),
        source=f"SVHN .mat files in {folder}",
    )
