"""Writers of tiny datasets in the real on-disk formats, for tests.

Each writer puts a few images in ``root`` exactly as the official distribution lays them
out and returns what it wrote (:class:`Written`, images uint8 (N, C, H, W)) so a test can
compare. Images carry a learnable class signal (a bright square whose position depends on
the class, over dim noise), so end-to-end tests can train a tiny model on them.

Typical use in another test::

    from tests.data_factories import tiny_fashion_mnist
    root = tiny_fashion_mnist(tmp_path)          # IDX .gz files, 60 train / 20 test
    split = load_split("fashion_mnist", root=str(root))
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FASHION_CLASSES = (
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


@dataclass
class Written:
    """What a writer put on disk: uint8 images (N, C, H, W), int64 labels, class names."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    train_coarse: np.ndarray | None = None
    test_coarse: np.ndarray | None = None
    coarse_names: tuple[str, ...] | None = None


def class_images(
    n: int, channels: int, height: int, width: int, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (N, C, H, W) with balanced labels and a class-dependent bright square."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    images = rng.integers(0, 60, size=(n, channels, height, width), dtype=np.uint8)
    side = max(2, min(height, width) // 4)
    per_row, per_col = width // side, height // side
    for i, label in enumerate(labels):
        cell = int(label) % (per_row * per_col)
        top, left = (cell // per_row) * side, (cell % per_row) * side
        images[i, :, top : top + side, left : left + side] = 200 + (int(label) * 7) % 56
    return images, labels


# ----------------------------------------------------------------------------- IDX


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    """One uint8 array as an IDX file (magic 0x0000 08 <ndim>, big-endian int32 sizes)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_fashion_mnist(
    root: Path, n_train: int = 60, n_test: int = 20, *, gz: bool = True, seed: int = 0
) -> Written:
    """The four Fashion-MNIST IDX files (28x28 grayscale, 10 classes) in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    train_x, train_y = class_images(n_train, 1, 28, 28, 10, seed)
    test_x, test_y = class_images(n_test, 1, 28, 28, 10, seed + 1)
    write_idx(root / "train-images-idx3-ubyte", train_x[:, 0], gz=gz)
    write_idx(root / "train-labels-idx1-ubyte", train_y.astype(np.uint8), gz=gz)
    write_idx(root / "t10k-images-idx3-ubyte", test_x[:, 0], gz=gz)
    write_idx(root / "t10k-labels-idx1-ubyte", test_y.astype(np.uint8), gz=gz)
    return Written(train_x, train_y, test_x, test_y, FASHION_CLASSES)


def tiny_fashion_mnist(tmp_path: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """A Fashion-MNIST root with gzip IDX files under ``tmp_path``; pass it as ``root``."""
    root = tmp_path / "fashion-mnist"
    write_fashion_mnist(root, n_train, n_test, seed=seed)
    return root


# ----------------------------------------------------------------------------- CIFAR


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 3, 32, 32) -> (N, 3072): each row 1024 red, 1024 green, 1024 blue values."""
    return images.reshape(len(images), -1)


def write_cifar10(
    root: Path, n_per_batch: int = 4, n_test: int = 10, *, seed: int = 0, protocol: int = 4
) -> Written:
    """``root/cifar-10-batches-py/`` with five training batches, a test batch and ``batches.meta``.

    Dicts have bytes keys (``b"data"``, ``b"labels"``, ...) like the real Python-2 pickles.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    train_x, train_y = class_images(5 * n_per_batch, 3, 32, 32, 10, seed)
    test_x, test_y = class_images(n_test, 3, 32, 32, 10, seed + 1)
    for b in range(5):
        part = slice(b * n_per_batch, (b + 1) * n_per_batch)
        batch = {
            b"batch_label": f"training batch {b + 1} of 5".encode(),
            b"labels": [int(v) for v in train_y[part]],
            b"data": _cifar_rows(train_x[part]),
            b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)],
        }
        with (folder / f"data_batch_{b + 1}").open("wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    test = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in test_y],
        b"data": _cifar_rows(test_x),
    }
    with (folder / "test_batch").open("wb") as f:
        pickle.dump(test, f, protocol=protocol)
    meta = {
        b"num_cases_per_batch": n_per_batch,
        b"label_names": [n.encode() for n in names],
        b"num_vis": 3072,
    }
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump(meta, f, protocol=protocol)
    return Written(train_x, train_y, test_x, test_y, names)


def write_cifar100(root: Path, n_train: int = 30, n_test: int = 10, *, seed: int = 0) -> Written:
    """``root/cifar-100-python/{train, test, meta}`` with 100 fine classes (``fine_labels``) in
    20 superclasses (``coarse_labels``: fine class k belongs to superclass k // 5)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    names = tuple(f"class_{i:02d}" for i in range(100))
    train_x, train_y = class_images(n_train, 3, 32, 32, 100, seed)
    test_x, test_y = class_images(n_test, 3, 32, 32, 100, seed + 1)
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        batch = {
            b"filenames": [f"{i}.png".encode() for i in range(len(x))],
            b"batch_label": name.encode(),
            b"fine_labels": [int(v) for v in y],
            b"coarse_labels": [int(v) // 5 for v in y],
            b"data": _cifar_rows(x),
        }
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f)
    coarse_names = tuple(f"super_{i:02d}" for i in range(20))
    meta = {
        b"fine_label_names": [n.encode() for n in names],
        b"coarse_label_names": [n.encode() for n in coarse_names],
    }
    with (folder / "meta").open("wb") as f:
        pickle.dump(meta, f)
    return Written(train_x, train_y, test_x, test_y, names, train_y // 5, test_y // 5, coarse_names)


# ----------------------------------------------------------------------------- SVHN, STL-10


def write_svhn(root: Path, n_train: int = 20, n_test: int = 10, *, seed: int = 0) -> Written:
    """``train_32x32.mat`` / ``test_32x32.mat``: X (32, 32, 3, N), y (N, 1) with 10 for digit 0."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    train_x, train_y = class_images(n_train, 3, 32, 32, 10, seed)
    test_x, test_y = class_images(n_test, 3, 32, 32, 10, seed + 1)
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        mat_y = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(str(root / f"{name}_32x32.mat"), {"X": x.transpose(2, 3, 1, 0), "y": mat_y})
    return Written(train_x, train_y, test_x, test_y, tuple(str(d) for d in range(10)))


def write_stl10(root: Path, n_train: int = 10, n_test: int = 10, *, seed: int = 0) -> Written:
    """``root/stl10_binary/``: 96x96x3 images stored channel by channel, each column-major; labels 1..10."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    names = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
    train_x, train_y = class_images(n_train, 3, 96, 96, 10, seed)
    test_x, test_y = class_images(n_test, 3, 96, 96, 10, seed + 1)
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        # Column-major per channel: write the transpose of each (H, W) plane row by row.
        (folder / f"{name}_X.bin").write_bytes(np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tobytes())
        (folder / f"{name}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return Written(train_x, train_y, test_x, test_y, names)


# ----------------------------------------------------------------------------- image folder


@dataclass
class WrittenFolder:
    """An image folder on disk: its root, classes, the bad files written and the odd-sized ones."""

    root: Path
    class_names: tuple[str, ...]
    bad: list[Path]
    odd_size: list[Path]
    n_train: int
    n_test: int


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "frog"),
    n_train: int = 6,
    n_test: int = 2,
    *,
    size: tuple[int, int] = (16, 16),
    with_test: bool = True,
    with_bad: bool = False,
    gray: bool = False,
    mixed: bool = True,
    seed: int = 0,
) -> WrittenFolder:
    """``root/train/<class>/*.png`` (and ``root/test/...``) of ``size`` (W, H) images.

    ``mixed=True`` writes one image per class at another size and varies modes (RGB, L,
    RGBA, P, JPEG); ``gray=True`` writes only grayscale images. ``with_bad=True`` adds a
    corrupt PNG, a truncated PNG and a text file to ``train/`` (their paths are in ``bad``).
    """
    rng = np.random.default_rng(seed)
    bad: list[Path] = []
    odd: list[Path] = []
    parts = [("train", n_train)] + ([("test", n_test)] if with_test else [])
    modes = ["RGB", "L", "RGBA", "P"]
    for part, count in parts:
        for ci, cls in enumerate(classes):
            folder = root / part / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                w, h = size
                if mixed and i == count - 1 and part == "train":
                    w, h = size[0] + 4, size[1] - 4
                arr = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
                arr[ci : ci + 4, ci : ci + 4] = 220
                if gray:
                    img = Image.fromarray(arr[:, :, 0], mode="L")
                else:
                    mode = modes[i % len(modes)] if mixed else "RGB"
                    img = Image.fromarray(arr, mode="RGB").convert(mode)
                suffix = ".jpg" if mixed and i == 1 and not gray else ".png"
                if suffix == ".jpg":
                    img = img.convert("RGB")
                path = folder / f"{part}_{cls}_{i}{suffix}"
                img.save(path)
                if (w, h) != size:
                    odd.append(path)
    if with_bad:
        first = root / "train" / classes[0]
        corrupt = first / "corrupt.png"
        corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 200, dtype=np.uint8)))
        good = next(p for p in sorted(first.glob("*.png")) if p not in odd)
        truncated = first / "truncated.png"
        truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
        text = root / "train" / classes[-1] / "notes.txt"
        text.write_text("not an image\n")
        bad = [corrupt, truncated, text]
    return WrittenFolder(root, tuple(sorted(classes)), bad, odd, n_train, n_test if with_test else 0)


# ----------------------------------------------------------------------------- npz


def write_npz(
    path: Path,
    n_train: int = 20,
    n_test: int = 10,
    *,
    layout: str = "nhwc",
    as_float: bool = False,
    channels: int = 3,
    class_names: tuple[str, ...] | None = ("a", "b", "c", "d"),
    drop: str | None = None,
    train_labels: list[int] | None = None,
    test_labels: list[int] | None = None,
    seed: int = 0,
) -> Written:
    """A ``.npz`` with ``x_train, y_train, x_test, y_test`` (+ ``class_names``) in ``layout``.

    ``layout`` is ``"nhwc"``, ``"nchw"`` or ``"nhw"`` (grayscale); ``as_float`` stores
    images as float32 in [0, 1]; ``drop`` leaves one key out. ``train_labels`` /
    ``test_labels`` replace the balanced labels (and set ``n_train`` / ``n_test``).
    """
    num_classes = len(class_names) if class_names else 4
    c = 1 if layout == "nhw" else channels
    n_train = len(train_labels) if train_labels is not None else n_train
    n_test = len(test_labels) if test_labels is not None else n_test
    train_x, train_y = class_images(n_train, c, 12, 10, num_classes, seed)
    test_x, test_y = class_images(n_test, c, 12, 10, num_classes, seed + 1)
    if train_labels is not None:
        train_y = np.asarray(train_labels, dtype=np.int64)
    if test_labels is not None:
        test_y = np.asarray(test_labels, dtype=np.int64)

    def store(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = {"nhwc": x.transpose(0, 2, 3, 1), "nchw": x, "nhw": x[:, 0]}[layout]
        return out.astype(np.float32) / 255.0 if as_float else out

    arrays: dict[str, Any] = {
        "x_train": store(train_x),
        "y_train": train_y,
        "x_test": store(test_x),
        "y_test": test_y,
    }
    if class_names is not None:
        arrays["class_names"] = np.array(class_names)
    if drop is not None:
        arrays.pop(drop)
    np.savez(path, **arrays)
    names = class_names or tuple(str(i) for i in range(num_classes))
    return Written(train_x, train_y, test_x, test_y, names)
