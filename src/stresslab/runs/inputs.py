"""Images and labels handed over in memory, checked and brought to the data contract.

:func:`stresslab.probe` takes a test set (and optionally a training and a validation set) as
``(images, labels)`` pairs of NumPy arrays or torch tensors, or as a torch ``Dataset`` whose
items are ``(image, label)``. This module turns each into images (N, C, H, W) and int64 labels
(N,), and refuses anything else with a :class:`~stresslab.errors.DataError` that names the
argument (``test``, ``train`` or ``val``) and the value at fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stresslab.errors import DataError

__all__ = ["as_images", "as_labels", "as_pair", "check_label_range"]

_LAYOUTS = "(N, C, H, W), (N, H, W, C) or (N, H, W) with 1 or 3 channels"


def _array(value: Any, what: str) -> np.ndarray | Tensor:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return value
    raise DataError(f"{what}: expected a numpy array or a torch tensor, got {type(value).__name__}")


def _tensor(arr: np.ndarray) -> Tensor:
    """A tensor over ``arr`` (copied when not contiguous or read-only, e.g. memory-mapped)."""
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def _channels_first(shape: Sequence[int], is_tensor: bool) -> bool | None:
    """True for NCHW, False for NHWC, None when neither axis 1 nor axis 3 can be channels.

    When both could be (e.g. (N, 3, 32, 3)) each library's own convention wins: NCHW for
    torch tensors, NHWC for NumPy arrays (as the npz loader reads them)."""
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if first and last:
        return is_tensor
    return first if first or last else None


def as_images(value: Any, arg: str) -> Tensor:
    """Images in any accepted layout and type -> a tensor (N, C, H, W).

    Accepted: NCHW, NHWC or NHW (one channel), 1 or 3 channels; uint8 (0..255, kept as
    uint8), other integers within 0..255 (made uint8), or floats in [0, 1] (kept exactly, as
    float32). Anything else raises DataError naming ``arg``.
    """
    x = _array(value, f"{arg}: images")
    if isinstance(x, Tensor) and x.dtype in (torch.bfloat16, torch.float16):
        x = x.float()  # NumPy has no bfloat16
    is_tensor = isinstance(x, Tensor)
    shape = tuple(x.shape)
    if len(shape) == 3:
        x = x[:, None]
    elif len(shape) == 4:
        first = _channels_first(shape, is_tensor)
        if first is None:
            raise DataError(f"{arg}: images of shape {shape}: no channel axis of 1 or 3; expected {_LAYOUTS}")
        if not first:
            x = x.permute(0, 3, 1, 2) if isinstance(x, Tensor) else x.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{arg}: images must be {_LAYOUTS}; got a {len(shape)}-D array of shape {shape}")
    if shape[0] == 0:
        raise DataError(f"{arg}: no images (shape {shape})")
    arr = x.numpy() if isinstance(x, Tensor) else x
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        out = arr
    elif kind == "b":
        raise DataError(f"{arg}: images are booleans; give uint8 (0..255) or floats in [0, 1]")
    elif kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{arg}: integer images must be in 0..255, found {lo}..{hi}")
        out = arr.astype(np.uint8)
    elif kind == "f":
        out = arr.astype(np.float32, copy=False)
        lo_f, hi_f = float(out.min()), float(out.max())  # NaN if any is NaN: no mask of N images
        if not (math.isfinite(lo_f) and math.isfinite(hi_f)):
            raise DataError(f"{arg}: images hold NaN or infinite values")
        if lo_f < 0.0 or hi_f > 1.0:
            raise DataError(
                f"{arg}: float images must be in [0, 1], found {lo_f:.4g}..{hi_f:.4g}. Give the images "
                "before normalization (stresslab's contract is [0, 1]) and the model's normalization as "
                "normalize=(mean, std); or give uint8 images in 0..255"
            )
    else:
        raise DataError(f"{arg}: images have unsupported dtype {arr.dtype}")
    return _tensor(out)


def as_labels(value: Any, arg: str) -> Tensor:
    """Class indices (N,) or (N, 1) as int64 (N,); DataError naming ``arg`` otherwise."""
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    y = _array(value, f"{arg}: labels")
    arr = y.numpy() if isinstance(y, Tensor) else y
    if arr.ndim == 2 and arr.shape[1] > 1:
        raise DataError(
            f"{arg}: labels have shape {arr.shape}; expected class indices (N,) "
            "(for one-hot labels give y.argmax(1))"
        )
    if arr.ndim not in (1, 2) or arr.dtype.kind not in "iu":
        raise DataError(f"{arg}: labels must be integer class indices (N,), got {arr.dtype} {arr.shape}")
    labels = _tensor(arr.reshape(-1).astype(np.int64))
    if len(labels) and int(labels.min()) < 0:
        raise DataError(f"{arg}: labels must be >= 0, found {int(labels.min())}")
    return labels


def check_label_range(labels: Tensor, num_classes: int, arg: str, why: str) -> None:
    """Every label in 0..num_classes-1, else DataError naming ``arg`` (``why`` says where K comes from)."""
    bad = labels >= num_classes
    if bool(bad.any()):
        found = sorted(set(labels[bad].tolist()))
        shown = ", ".join(map(str, found[:8])) + (", ..." if len(found) > 8 else "")
        raise DataError(
            f"{arg}: {int(bad.sum())} label(s) outside 0..{num_classes - 1} ({why}); found {shown}"
        )


def _item_image(image: Any, where: str) -> np.ndarray | Tensor:
    if isinstance(image, (Tensor, np.ndarray)):
        return image
    try:  # PIL images and anything else NumPy can read as an array
        return np.asarray(image)
    except Exception as exc:
        raise DataError(f"{where}: the image is a {type(image).__name__}, not an array") from exc


def _from_dataset(data: Any, arg: str) -> tuple[Tensor, Tensor]:
    """Every (image, label) item of a map-style or iterable Dataset, stacked."""
    items = (data[i] for i in range(len(data))) if hasattr(data, "__len__") else iter(data)
    images: list[Any] = []
    labels: list[int] = []
    for i, item in enumerate(items):
        where = f"{arg}[{i}]"
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{where}: expected an (image, label) pair, got {type(item).__name__}")
        image = _item_image(item[0], where)
        if images and tuple(image.shape) != tuple(images[0].shape):
            shape, first = tuple(image.shape), tuple(images[0].shape)
            raise DataError(f"{where}: image of shape {shape} differs from the first, {first}")
        label = item[1]
        if isinstance(label, (Tensor, np.ndarray)) and label.reshape(-1).shape[0] == 1:
            label = label.item()
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise DataError(f"{where}: the label must be an integer class index, got {label!r}")
        images.append(image)
        labels.append(int(label))
    if not images:
        raise DataError(f"{arg}: the dataset is empty")
    first = images[0]
    stacked = torch.stack(images) if isinstance(first, Tensor) else np.stack(images)
    return as_images(stacked, arg), as_labels(np.asarray(labels, dtype=np.int64), arg)


def _is_pair(data: Any) -> bool:
    """A tuple ``(x, y)``, or a list ``[x, y]`` whose first item is an array (not a sample)."""
    if isinstance(data, tuple):
        return len(data) == 2
    return isinstance(data, list) and len(data) == 2 and isinstance(data[0], (Tensor, np.ndarray))


def as_pair(data: Any, arg: str) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` or a torch Dataset of ``(image, label)`` -> images (N, C, H, W), labels (N,)."""
    if isinstance(data, tuple) and len(data) != 2:
        raise DataError(f"{arg}: expected a pair (images, labels), got a tuple of {len(data)} items")
    if _is_pair(data):
        x, y = as_images(data[0], arg), as_labels(data[1], arg)
    elif isinstance(data, torch.utils.data.Dataset) or (
        hasattr(data, "__getitem__")
        and hasattr(data, "__len__")
        and not isinstance(data, (Tensor, np.ndarray))
    ):
        x, y = _from_dataset(data, arg)
    else:
        raise DataError(
            f"{arg}: expected (images, labels) or a torch Dataset of (image, label) items, "
            f"got {type(data).__name__}"
        )
    if len(x) != len(y):
        raise DataError(f"{arg}: {len(x)} images but {len(y)} labels")
    return x, y
