"""Image decoding and conversion: files to uint8 arrays, and batches to another size or channel count.

:func:`convert_images` resizes and changes channels of whole uint8 batches (N, C, H, W);
:func:`read_header` and :func:`decode_image` read single image files for loaders whose
images vary in size and mode. Decoders return an error message instead of raising, so a
loader can report (or skip) every bad file at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from stresslab.data import formats
from stresslab.errors import DataError

# ITU-R BT.601 luminance weights, as PIL's convert("L").
_LUMA = (0.299, 0.587, 0.114)


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
    weights = torch.tensor(_LUMA).view(1, 3, 1, 1)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].float()
        if c_in == 3 and c_out == 1:  # reduce first: cheaper to resize one channel
            part = (part * weights).sum(1, keepdim=True)
        if resize:
            part = F.interpolate(part, size=out_hw, mode="bilinear", antialias=True, align_corners=False)
        # Assignment broadcasts a single channel over three (1 -> 3 by repetition).
        out[start : start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def workers() -> int:
    """Threads for decoding files: PIL releases the GIL while decoding, so threads beyond
    the core count still help with I/O."""
    return min(32, (os.cpu_count() or 1) + 4)


def read_header(path: Path) -> tuple[tuple[int, int], bool] | str:
    """(size (W, H), is grayscale) from the file's header only, or an error message naming it."""
    try:
        with Image.open(path) as img:
            return img.size, img.mode in formats.GRAY_MODES
    except Exception as exc:  # any failure marks the file bad; the message says why
        return f"{path}: not a readable image ({type(exc).__name__}: {exc})"


def resize_center_crop(img: Image.Image, size: tuple[int, int], crop_pct: float) -> Image.Image:
    """``img`` with its shorter side resized to ``floor(min(size) / crop_pct)`` pixels (aspect
    ratio kept, bicubic) and the centre ``size`` (W, H) cropped, as timm's evaluation transform
    and torchvision's ``ImageClassification`` (resize 256, crop 224: ``crop_pct`` 0.875)."""
    short = max(min(size), int(min(size) / crop_pct))
    w, h = img.size
    # torchvision's Resize(short) and CenterCrop(size) arithmetic, so the two agree pixel for pixel.
    new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    new = (max(size[0], new[0]), max(size[1], new[1]))
    if new != img.size:
        img = img.resize(new, Image.Resampling.BICUBIC)
    left, top = round((new[0] - size[0]) / 2.0), round((new[1] - size[1]) / 2.0)
    return img.crop((left, top, left + size[0], top + size[1]))


def decode_image(
    path: Path, size: tuple[int, int], channels: int, crop_pct: float | None = None
) -> np.ndarray | str:
    """The whole image as uint8 (H, W, C) at ``size`` (W, H), bilinear, or an error message.

    ``channels`` 1 decodes as grayscale (``"L"``), 3 as RGB (see
    :func:`~stresslab.data.formats.read_image_file`). With ``crop_pct`` the aspect ratio is
    kept: see :func:`resize_center_crop`.
    """
    try:
        img = formats.read_image_file(path, "L" if channels == 1 else "RGB")
    except DataError as exc:
        return str(exc)
    if crop_pct is not None:
        img = resize_center_crop(img, size, crop_pct)
    elif img.size != size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr
