"""Fashion-MNIST from its four IDX files (raw or .gz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stresslab.data import formats
from stresslab.data.loaders.base import DEFAULT_DOWNLOAD_ROOT, RawDataset, register_dataset
from stresslab.errors import DataError

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Folders searched after the given root: the Debian package ``dataset-fashion-mnist``.
FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)


def _find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (raw preferred over .gz); None if none is there.

    A folder holding some but not all of them raises DataError: silently falling back to
    another copy would load data the user did not point at.
    """
    found: dict[str, Path] = {}
    for stem in FASHION_MNIST_FILES:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[stem] = candidate
                break
    if not found:
        return None
    missing = [s for s in FASHION_MNIST_FILES if s not in found]
    if missing:
        raise DataError(f"{folder} holds only part of Fashion-MNIST; missing: {', '.join(missing)}(.gz)")
    return found


def _read_idx_pair(images: Path, labels: Path, num_classes: int) -> tuple[Tensor, Tensor]:
    x = formats.read_idx(images, ndim=3)
    y = formats.read_idx(labels, ndim=1)
    if x.dtype != np.uint8 or y.dtype != np.uint8:
        raise DataError(f"{images} / {labels}: expected unsigned-byte IDX files")
    if len(x) != len(y):
        raise DataError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    if len(y) and int(y.max()) >= num_classes:
        raise DataError(f"{labels}: label {int(y.max())} is out of range 0..{num_classes - 1}")
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


@register_dataset("fashion_mnist")
def load_fashion_mnist(root: Path | None, *, download: bool = False) -> RawDataset:
    """Fashion-MNIST (Xiao et al., 2017): 60,000 + 10,000 grayscale 28x28 images, 10 classes.

    Reads the four IDX files (raw or .gz) from ``root`` or ``root/FashionMNIST/raw``
    (torchvision's layout) when a root is given, else from ``/usr/share/datasets/fashion-mnist``.
    A given root is never silently replaced by the system copy: a typo in ``--data-root``
    is an error, not a run on other files.
    """
    searched = [root, root / "FashionMNIST" / "raw"] if root is not None else list(FASHION_MNIST_SYSTEM_DIRS)
    files = next((f for f in (_find_idx_files(d) for d in searched) if f is not None), None)
    if files is None and download:
        target = root if root is not None else DEFAULT_DOWNLOAD_ROOT
        _download_fashion_mnist(target)
        files = _find_idx_files(target / "FashionMNIST" / "raw")
    if files is None:
        raise DataError(
            "Fashion-MNIST not found (searched: "
            + ", ".join(str(d) for d in searched)
            + "). Install it with `apt-get install dataset-fashion-mnist`, or pass `--data-root DIR` "
            "with the four IDX files (train-images-idx3-ubyte.gz, ...), or set `download: true` "
            "where a network is available."
        )
    train_x, train_y = _read_idx_pair(files[FASHION_MNIST_FILES[0]], files[FASHION_MNIST_FILES[1]], 10)
    test_x, test_y = _read_idx_pair(files[FASHION_MNIST_FILES[2]], files[FASHION_MNIST_FILES[3]], 10)
    folder = files[FASHION_MNIST_FILES[0]].parent
    return RawDataset(
        train_x,
        train_y,
        test_x,
        test_y,
        FASHION_MNIST_CLASSES,
        source=f"Fashion-MNIST IDX files in {folder}",
        background=0.0,
    )


def _download_fashion_mnist(root: Path) -> None:
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(root), train=True, download=True)
    except Exception as exc:  # network and checksum failures come in many types
        raise DataError(f"downloading Fashion-MNIST into {root} failed: {exc}") from exc
