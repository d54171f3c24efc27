"""Arrays in one ``.npz`` file: ``x_train, y_train, x_test, y_test`` (+ optional ``class_names``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stresslab.data.cache import CacheSettings
from stresslab.data.loaders.base import RawDataset, register_dataset
from stresslab.data.loaders.npz_cache import cached_npz
from stresslab.errors import DataError

_ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


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


def _read_arrays(path: Path, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from exc
    with npz:
        arrays: dict[str, np.ndarray] = {}
        for key in (*_ARRAY_KEYS, "class_names"):
            if key in skip and key in npz.files:
                continue
            if key not in npz.files:
                if key == "class_names":
                    continue
                raise DataError(f"{path} has no {key!r} array (found: {', '.join(npz.files)})")
            try:
                arrays[key] = npz[key]
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: cannot read {key!r} ({exc})") from exc
    return arrays


def _class_names(arrays: dict[str, np.ndarray], labels: dict[str, Tensor], path: Path) -> tuple[str, ...]:
    """The file's ``class_names``, refusing labels outside them; else ``"0" .. str(max label)``."""
    if "class_names" not in arrays:
        top = max((int(y.max()) for y in labels.values() if len(y)), default=0)
        return tuple(str(i) for i in range(top + 1))
    names_arr = arrays["class_names"]
    if names_arr.dtype.kind not in "US" or names_arr.ndim != 1:
        raise DataError(f"{path}: 'class_names' should be a 1-D array of strings")
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names_arr.tolist())
    for key, y in labels.items():
        outside = torch.unique(y[y >= len(names)]).tolist() if len(y) else []
        if outside:
            count = int((y >= len(names)).sum())
            shown = ", ".join(str(v) for v in outside[:10]) + (", ..." if len(outside) > 10 else "")
            raise DataError(
                f"{path}: {key!r} has {count} label(s) outside the {len(names)} classes of 'class_names' "
                f"(valid labels 0..{len(names) - 1}; found {shown})"
            )
    return names


@register_dataset("npz")
def load_npz(root: Path | None, *, cache: CacheSettings | None = None) -> RawDataset:
    """A ``.npz`` file (``root`` is the file) with ``x_train, y_train, x_test, y_test``.

    Images may be NHW, NHWC or NCHW, uint8 or float in [0, 1]; ``class_names`` (an array of
    strings) is optional (default: ``"0"``, ``"1"``, ...). A label outside ``class_names``
    raises DataError naming the file and the key. Loaded with ``allow_pickle=False``.
    """
    if root is None:
        raise DataError("npz needs `--data-root FILE.npz`")
    stored = cached_npz(root, cache or CacheSettings(), _npz_images)
    arrays = _read_arrays(root, skip=("x_train", "x_test") if stored is not None else ())
    train_x, test_x = stored or (
        _npz_images(arrays["x_train"], "x_train", root),
        _npz_images(arrays["x_test"], "x_test", root),
    )
    labels = {key: _npz_labels(arrays[key], key, root) for key in ("y_train", "y_test")}
    train_y, test_y = labels["y_train"], labels["y_test"]
    for x, y, key in ((train_x, train_y, "y_train"), (test_x, test_y, "y_test")):
        if len(x) != len(y):
            raise DataError(f"{root}: {key!r} has {len(y)} labels for {len(x)} images")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"{root}: x_train images {tuple(train_x.shape[1:])} differ from x_test {tuple(test_x.shape[1:])}"
        )
    class_names = _class_names(arrays, labels, root)
    return RawDataset(train_x, train_y, test_x, test_y, class_names, source=f"arrays in {root}")
