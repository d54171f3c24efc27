"""The dataset registry and :func:`load_split`, the one entry point the runner calls.

A loader (registered in :data:`DATASETS`) returns a dataset's official train and test sets
as a :class:`RawDataset`; :func:`load_split` converts size and channels if asked, carves a
fixed-seed validation split out of the official training set, takes seeded subsets and
computes the channel statistics the model's Normalize layer uses.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from stresslab.data import formats
from stresslab.data.base import DatasetInfo, Split
from stresslab.data.sampling import stratified_sample
from stresslab.errors import ConfigError, DataError
from stresslab.registry import Registry

logger = logging.getLogger(__name__)

#: Where a loader downloads to when ``download=True`` and no root is given.
DEFAULT_DOWNLOAD_ROOT = Path("data")


@dataclass
class RawDataset:
    """A dataset's official train and test sets, as a loader returns them.

    Images are uint8 tensors (N, C, H, W), labels int64 tensors (N,) in
    ``0 .. len(class_names) - 1``. ``background`` is the plain-background pixel value in
    [0, 1] where the dataset has one (Fashion-MNIST: 0.0), else ``None``. ``skipped`` lists
    files a loader left out (``skip_bad=True``).
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    class_names: tuple[str, ...]
    source: str
    background: float | None = None
    skipped: list[str] = field(default_factory=list)


class DatasetLoader(Protocol):
    """Signature of a registered loader.

    ``root`` is the folder (or file, for ``npz``) holding the data, ``None`` for the
    loader's default places. ``image_size`` and ``channels`` are hints for loaders whose
    images vary (``image_folder``); :func:`load_split` converts every dataset afterwards.
    """

    def __call__(
        self,
        root: Path | None,
        *,
        download: bool = False,
        skip_bad: bool = False,
        image_size: int | None = None,
        channels: int | None = None,
    ) -> RawDataset: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")


# --------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------

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


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(
    root: Path | None,
    *,
    download: bool = False,
    skip_bad: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
) -> RawDataset:
    """Fashion-MNIST (Xiao et al., 2017): 60,000 + 10,000 grayscale 28x28 images, 10 classes.

    Reads the four IDX files (raw or .gz) from the first of: ``root``,
    ``root/FashionMNIST/raw`` (torchvision's layout), ``/usr/share/datasets/fashion-mnist``.
    """
    searched: list[Path] = []
    if root is not None:
        searched += [root, root / "FashionMNIST" / "raw"]
    searched += list(FASHION_MNIST_SYSTEM_DIRS)
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


# --------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# --------------------------------------------------------------------------------------


def _require_root(root: Path | None, download: bool, name: str, layout: str) -> Path:
    if root is not None:
        return root
    if download:
        return DEFAULT_DOWNLOAD_ROOT
    raise DataError(f"{name} needs `--data-root DIR` holding {layout} (or `download: true` with a network)")


def _download_archive(name: str, url: str, root: Path, filename: str, md5: str) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(url, str(root), filename=filename, md5=md5)
    except Exception as exc:  # network and checksum failures come in many types
        raise DataError(f"downloading {name} into {root} failed: {exc}") from exc


def _pick_folder(root: Path, folder: str, marker: str) -> Path:
    """``root/folder``, or ``root`` itself when the user pointed at the inner folder."""
    if not (root / folder / marker).exists() and (root / marker).exists():
        return root
    return root / folder


def _require_files(folder: Path, names: Sequence[str], dataset: str) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{dataset}: missing {', '.join(str(folder / n) for n in missing)}")


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
    base = _require_root(root, download, name, f"{spec.base_folder}/")
    folder = _pick_folder(base, spec.base_folder, meta_file)
    needed = [*train_files, test_file, meta_file]
    if download and any(not (folder / n).is_file() for n in needed):
        # Download and extract only: torchvision's CIFAR classes would unpickle the files
        # with the default (code-executing) unpickler.
        _download_archive(name, spec.url, base, spec.filename, spec.tgz_md5)
        folder = base / spec.base_folder
    _require_files(folder, needed, name)
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


@DATASETS.register("cifar10")
def load_cifar10(
    root: Path | None,
    *,
    download: bool = False,
    skip_bad: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
) -> RawDataset:
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


@DATASETS.register("cifar100")
def load_cifar100(
    root: Path | None,
    *,
    download: bool = False,
    skip_bad: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
) -> RawDataset:
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


# --------------------------------------------------------------------------------------
# SVHN, STL-10
# --------------------------------------------------------------------------------------


@DATASETS.register("svhn")
def load_svhn(
    root: Path | None,
    *,
    download: bool = False,
    skip_bad: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
) -> RawDataset:
    """SVHN cropped digits (Netzer et al., 2011): 73,257 + 26,032 RGB 32x32 images, digits 0-9.

    Reads ``root/train_32x32.mat`` and ``root/test_32x32.mat`` (the ``extra`` set is not used).
    """
    from torchvision.datasets import SVHN

    folder = _require_root(root, download, "SVHN", "train_32x32.mat and test_32x32.mat")
    splits = {"train": SVHN.split_list["train"], "test": SVHN.split_list["test"]}
    if download:
        from torchvision.datasets.utils import download_url

        for url, filename, md5 in splits.values():
            if not (folder / filename).is_file():
                try:
                    download_url(url, str(folder), filename=filename, md5=md5)
                except Exception as exc:  # network and checksum failures come in many types
                    raise DataError(f"downloading SVHN into {folder} failed: {exc}") from exc
    _require_files(folder, [s[1] for s in splits.values()], "SVHN")
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


@DATASETS.register("stl10")
def load_stl10(
    root: Path | None,
    *,
    download: bool = False,
    skip_bad: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
) -> RawDataset:
    """STL-10 (Coates et al., 2011), labeled part: 5,000 + 8,000 RGB 96x96 images, 10 classes.

    Reads ``root/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin,
    class_names.txt}``; the unlabeled images are not used.
    """
    from torchvision.datasets import STL10

    base = _require_root(root, download, "STL-10", "stl10_binary/")
    names = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt"]
    folder = _pick_folder(base, STL10.base_folder, "train_X.bin")
    if download and any(not (folder / n).is_file() for n in names):
        _download_archive("STL-10", STL10.url, base, STL10.filename, STL10.tgz_md5)
        folder = base / STL10.base_folder
    _require_files(folder, names, "STL-10")
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


# --------------------------------------------------------------------------------------
# Image folder
# --------------------------------------------------------------------------------------

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


def _workers() -> int:
    # PIL releases the GIL while decoding, so threads beyond the core count still help with I/O.
    return min(32, (os.cpu_count() or 1) + 4)


def _probe_header(path: Path) -> tuple[tuple[int, int], bool] | str:
    """(size (W, H), is grayscale) from the header only, or an error message."""
    try:
        with Image.open(path) as img:
            return img.size, img.mode in formats.GRAY_MODES
    except Exception as exc:  # any failure marks the file bad; the message says why
        return f"{path}: not a readable image ({type(exc).__name__}: {exc})"


def _decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray | str:
    """Image as uint8 (H, W, C) at ``size`` (W, H), or an error message."""
    try:
        img = formats.read_image_file(path, "L" if channels == 1 else "RGB")
    except DataError as exc:
        return str(exc)
    if img.size != size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


@DATASETS.register("image_folder")
def load_image_folder(
    root: Path | None,
    *,
    download: bool = False,
    skip_bad: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
) -> RawDataset:
    """Images in ``root/train/<class>/*`` and ``root/test/<class>/*`` (PNG, JPEG, ... via PIL).

    Classes are the sorted sub-folder names of ``train/``. Images are converted to
    ``image_size`` x ``image_size`` (default: the most common size in ``train/``) and to
    ``channels`` (default: 3 unless every image is grayscale). Without a ``test/`` folder a
    stratified 20% of ``train/`` (seed ``HOLDOUT_SEED``) becomes the test set.

    Unreadable, truncated or non-image files raise one DataError listing every bad path, or
    with ``skip_bad=True`` are left out and listed in ``RawDataset.skipped``.
    """
    if download:
        raise DataError("image_folder cannot be downloaded; point `--data-root` at the folder")
    if root is None:
        raise DataError("image_folder needs `--data-root DIR` with train/<class>/ folders of images")
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        raise DataError(f"{train_dir} does not exist; image_folder expects {root}/train/<class>/<images>")
    train_files = _list_class_files(train_dir)
    if not train_files:
        raise DataError(f"{train_dir} has no class folders")
    empty = [str(train_dir / c) for c, files in train_files.items() if not files]
    if empty:
        raise DataError(f"class folders without files: {', '.join(empty)}")
    class_names = tuple(train_files)
    test_files = _list_class_files(test_dir) if test_dir.is_dir() else None
    if test_files is not None:
        unknown = [c for c in test_files if c not in train_files]
        if unknown:
            raise DataError(f"{test_dir} has classes not in {train_dir}: {', '.join(unknown)}")

    label_of = {c: i for i, c in enumerate(class_names)}

    def flat(groups: dict[str, list[Path]]) -> tuple[list[Path], list[int]]:
        paths = [p for c in groups for p in groups[c]]
        labels = [label_of[c] for c in groups for _ in groups[c]]
        return paths, labels

    tr_paths, tr_labels = flat(train_files)
    te_paths, te_labels = flat(test_files) if test_files is not None else ([], [])
    all_paths = tr_paths + te_paths

    with ThreadPoolExecutor(_workers()) as pool:
        headers = list(pool.map(_probe_header, all_paths))
        good_train = [h for h in headers[: len(tr_paths)] if not isinstance(h, str)]
        if image_size is not None:
            size = (image_size, image_size)
        elif good_train:
            size = Counter(h[0] for h in good_train).most_common(1)[0][0]
        else:
            size = (1, 1)  # every training file is bad; the error below says so
        n_channels = channels or (1 if good_train and all(h[1] for h in good_train) else 3)
        todo = [i for i, h in enumerate(headers) if not isinstance(h, str)]
        decoded = dict(
            zip(todo, pool.map(lambda i: _decode(all_paths[i], size, n_channels), todo), strict=True)
        )

    errors = [h for h in headers if isinstance(h, str)] + [d for d in decoded.values() if isinstance(d, str)]
    if errors and not skip_bad:
        raise DataError(
            f"{len(errors)} bad image file(s) under {root} (fix or remove them, or set skip_bad: true):\n  "
            + "\n  ".join(errors)
        )
    skipped = [str(all_paths[i]) for i, h in enumerate(headers) if isinstance(h, str)]
    skipped += [str(all_paths[i]) for i, d in decoded.items() if isinstance(d, str)]
    if skipped:
        logger.warning("skipped %d bad image file(s) under %s", len(skipped), root)

    def stack(indices: range, labels: list[int]) -> tuple[Tensor, Tensor]:
        keep = [i for i in indices if not isinstance(decoded.get(i, "bad"), str)]
        arrays = [decoded[i] for i in keep]
        if not arrays:
            return torch.empty(0, n_channels, size[1], size[0], dtype=torch.uint8), torch.empty(
                0, dtype=torch.long
            )
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        y = torch.tensor([labels[i - indices.start] for i in keep], dtype=torch.long)
        return x, y

    train_x, train_y = stack(range(len(tr_paths)), tr_labels)
    if len(train_y) == 0:
        raise DataError(f"no readable training images under {train_dir}")
    missing = [c for i, c in enumerate(class_names) if not bool((train_y == i).any())]
    if missing:
        logger.warning("classes without readable training images: %s", ", ".join(missing))
    source = f"image folder {root} ({len(class_names)} classes, {size[0]}x{size[1]}, {n_channels} channel(s))"
    if test_files is not None:
        test_x, test_y = stack(range(len(tr_paths), len(all_paths)), te_labels)
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


# --------------------------------------------------------------------------------------
# NPZ
# --------------------------------------------------------------------------------------


def _npz_images(arr: np.ndarray, key: str, path: Path) -> Tensor:
    """NHW / NHWC / NCHW, uint8 or float in [0, 1] -> uint8 (N, C, H, W)."""
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        channels_first, channels_last = arr.shape[1] in (1, 3), arr.shape[3] in (1, 3)
        if not (channels_first or channels_last):
            raise DataError(f"{path}: {key!r} has shape {arr.shape}; cannot tell the channel axis (1 or 3)")
        if channels_last:  # NHWC, numpy's usual layout, wins when both axes could be channels
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: {key!r} should be NHW, NHWC or NCHW images, found shape {arr.shape}")
    if arr.dtype == np.uint8:
        out = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            raise DataError(f"{path}: float images in {key!r} must be finite and in [0, 1]")
        out = np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DataError(f"{path}: integer images in {key!r} must be in 0..255")
        out = arr.astype(np.uint8)
    else:
        raise DataError(f"{path}: {key!r} has unsupported dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(out))


def _npz_labels(arr: np.ndarray, key: str, path: Path) -> Tensor:
    if (
        not np.issubdtype(arr.dtype, np.integer)
        or arr.ndim not in (1, 2)
        or (arr.ndim == 2 and arr.shape[1] != 1)
    ):
        raise DataError(
            f"{path}: {key!r} should be integer labels of shape (N,), found {arr.dtype} {arr.shape}"
        )
    labels = arr.reshape(-1).astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: {key!r} has negative labels")
    return torch.from_numpy(labels)


@DATASETS.register("npz")
def load_npz(
    root: Path | None,
    *,
    download: bool = False,
    skip_bad: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
) -> RawDataset:
    """A ``.npz`` file (``root`` is the file) with ``x_train, y_train, x_test, y_test``.

    Images may be NHW, NHWC or NCHW, uint8 or float in [0, 1]; ``class_names`` (an array of
    strings) is optional (default: ``"0"``, ``"1"``, ...). Loaded with ``allow_pickle=False``.
    """
    if root is None:
        raise DataError("npz needs `--data-root FILE.npz`")
    if download:
        raise DataError("npz cannot be downloaded; point `--data-root` at the .npz file")
    try:
        npz = np.load(root, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{root} is not a readable .npz file ({exc})") from exc
    with npz:
        arrays: dict[str, np.ndarray] = {}
        for key in ("x_train", "y_train", "x_test", "y_test", "class_names"):
            if key not in npz.files:
                if key == "class_names":
                    continue
                raise DataError(f"{root} has no {key!r} array (found: {', '.join(npz.files)})")
            try:
                arrays[key] = npz[key]
            except (OSError, ValueError) as exc:
                raise DataError(f"{root}: cannot read {key!r} ({exc})") from exc
    train_x, test_x = (
        _npz_images(arrays["x_train"], "x_train", root),
        _npz_images(arrays["x_test"], "x_test", root),
    )
    train_y, test_y = (
        _npz_labels(arrays["y_train"], "y_train", root),
        _npz_labels(arrays["y_test"], "y_test", root),
    )
    for x, y, key in ((train_x, train_y, "y_train"), (test_x, test_y, "y_test")):
        if len(x) != len(y):
            raise DataError(f"{root}: {key!r} has {len(y)} labels for {len(x)} images")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"{root}: x_train images {tuple(train_x.shape[1:])} differ from x_test {tuple(test_x.shape[1:])}"
        )
    top = max(int(y.max()) if len(y) else 0 for y in (train_y, test_y))
    if "class_names" in arrays:
        names_arr = arrays["class_names"]
        if names_arr.dtype.kind not in "US" or names_arr.ndim != 1:
            raise DataError(f"{root}: 'class_names' should be a 1-D array of strings")
        class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names_arr.tolist())
        if top >= len(class_names):
            raise DataError(f"{root}: label {top} but 'class_names' lists {len(class_names)} classes")
    else:
        class_names = tuple(str(i) for i in range(top + 1))
    return RawDataset(train_x, train_y, test_x, test_y, class_names, source=f"arrays in {root}")


# --------------------------------------------------------------------------------------
# Splits, subsets, conversions
# --------------------------------------------------------------------------------------


def convert_images(
    x: Tensor, *, size: tuple[int, int] | None = None, channels: int | None = None, chunk: int = 4096
) -> Tensor:
    """Resize and/or change the channel count of uint8 images (N, C, H, W), in batches.

    Resizing is bilinear with antialiasing (``torch.nn.functional.interpolate``) to
    ``size`` = (H, W). One channel becomes three by repetition; three become one by ITU-R
    BT.601 luminance (0.299 R + 0.587 G + 0.114 B, as PIL's ``convert("L")``). Returns uint8
    (N, channels, H', W'); ``x`` itself when nothing changes.
    """
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise DataError(f"convert_images expects uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    c_in = x.shape[1]
    c_out = c_in if channels is None else channels
    if c_out not in (1, 3) or c_in not in (1, 3):
        raise DataError(f"cannot convert images with {c_in} channel(s) to {c_out}")
    resize = size is not None and tuple(x.shape[2:]) != tuple(size)
    if not resize and c_out == c_in:
        return x
    out_hw = tuple(size) if resize and size is not None else tuple(x.shape[2:])
    out = torch.empty((len(x), c_out, *out_hw), dtype=torch.uint8)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].float()
        if c_in == 3 and c_out == 1:  # reduce first: cheaper to resize one channel
            part = (part * weights).sum(1, keepdim=True)
        if resize:
            part = F.interpolate(part, size=out_hw, mode="bilinear", antialias=True, align_corners=False)
        # Assignment broadcasts a single channel over three (1 -> 3 by repetition).
        out[start : start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), scaled to [0, 1].

    Exact: computed from a 256-bin histogram per channel in float64.
    """
    if len(x) == 0:
        raise DataError("no training images to compute channel statistics from")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        total = hist.sum()
        mean = float((hist * values).sum() / total)
        var = float((hist * (values - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(math.sqrt(var))
    return tuple(means), tuple(stds)


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
    """``x[index]`` along the first axis; numpy's take is ~6x faster than torch indexing on CPU."""
    return torch.from_numpy(np.take(x.numpy(), index.numpy(), axis=0))


def _check_count(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")


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
            are listed in ``Split.skipped``.
        download: let the loader download the dataset where it is missing (needs a network).

    Returns:
        A :class:`Split` of uint8 images (N, C, H, W) and int64 labels, with ``*_index``
        the positions in the official training / test sets, and ``info.mean`` / ``info.std``
        the per-channel statistics of the training images in [0, 1].
    """
    loader = DATASETS.get(dataset)
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

    raw = loader(
        Path(root).expanduser() if root is not None else None,
        download=download,
        skip_bad=skip_bad,
        image_size=image_size,
        channels=channels,
    )
    _check_raw(raw, dataset)
    full_y, test_y = raw.train_y, raw.test_y
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

    # Convert only the images kept: subsets of large sets stay cheap.
    size = (image_size, image_size) if image_size is not None else None
    train_x = convert_images(_take(raw.train_x, train_index), size=size, channels=channels)
    val_x = convert_images(_take(raw.train_x, val_index), size=size, channels=channels)
    test_x = convert_images(_take(raw.test_x, test_index), size=size, channels=channels)
    mean, std = channel_stats(train_x)
    if min(std) == 0.0:
        logger.warning("a channel of %s training images is constant; its std is set to 1.0", dataset)
        std = tuple(s if s > 0 else 1.0 for s in std)
    info = DatasetInfo(
        name=dataset,
        class_names=tuple(raw.class_names),
        channels=int(train_x.shape[1]),
        height=int(train_x.shape[2]),
        width=int(train_x.shape[3]),
        mean=mean,
        std=std,
        source="; ".join([raw.source, *notes]),
        background=raw.background,
    )
    return Split(
        info=info,
        train_x=train_x,
        train_y=full_y[train_index],
        val_x=val_x,
        val_y=full_y[val_index],
        test_x=test_x,
        test_y=test_y[test_index],
        train_index=train_index,
        val_index=val_index,
        test_index=test_index,
        skipped=list(raw.skipped),
    )
