"""The out-of-distribution sets the ``ood`` probe scores: built-in ones (no download) and the
user's own (any registered dataset), all as uint8 (N, C, H, W) at the model's size and channels.

Built-in, far from the data: ``uniform_noise`` (pixels uniform in 0..255), ``gaussian_noise``
(pixels N(128, 64^2), clipped), ``photos`` (random square crops of scikit-image's sample
photographs, shipped inside its wheel); built from the test images themselves:
``inverted`` (255 - x) and ``patch_shuffled`` (a 4 x 4 grid of patches in random order); near
the data: ``corrupted:<name>``, the test images at corruption severity 5.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stresslab.corruptions import CORRUPTIONS
from stresslab.data.base import to_float
from stresslab.data.convert import convert_images
from stresslab.data.loaders import DATASETS

FAR_SETS = ("uniform_noise", "gaussian_noise", "photos", "inverted", "patch_shuffled")
NEAR_CORRUPTIONS = ("gaussian_noise", "defocus_blur", "contrast")
# scikit-image sample images that ship in its wheel (no pooch download); natural photographs
# and textures, gray and colour.
_PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "coins",
    "moon",
    "horse",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "brick",
    "grass",
    "gravel",
    "clock",
    "page",
    "text",
)
PATCH_GRID = 4


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    import skimage.data  # imported here: only this set needs it

    out = []
    for name in _PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.dtype != np.uint8:
            img = (img.astype(np.float64) / max(float(img.max()), 1.0) * 255).round().astype(np.uint8)
        out.append(img[:, :, :3] if img.ndim == 3 else img[:, :, None])
    return tuple(out)


def photo_crops(n: int, size: tuple[int, int], channels: int, generator: torch.Generator) -> Tensor:
    """``n`` random square crops (side between 1/8 of the shorter side and all of it) of
    scikit-image's sample photographs, cycling through them, as uint8 (n, channels, H, W)."""
    photos = _photos()
    out = torch.empty((n, channels, *size), dtype=torch.uint8)
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        short = min(h, w)
        side = int(torch.randint(max(8, short // 8), short + 1, (1,), generator=generator))
        top = int(torch.randint(0, h - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - side + 1, (1,), generator=generator))
        crop = torch.from_numpy(np.ascontiguousarray(img[top : top + side, left : left + side]))
        out[i] = convert_images(crop.permute(2, 0, 1)[None], size=size, channels=channels)[0]
    return out


def patch_shuffle(x: Tensor, generator: torch.Generator, grid: int = PATCH_GRID) -> Tensor:
    """Images (N, C, H, W) cut into ``grid`` x ``grid`` patches put back in a random order per
    image (edge rows/columns beyond a multiple of ``grid`` stay in place)."""
    n, c, h, w = x.shape
    ph, pw = h // grid, w // grid
    if ph == 0 or pw == 0:
        return x.clone()
    out = x.clone()
    core = x[:, :, : ph * grid, : pw * grid].reshape(n, c, grid, ph, grid, pw)
    patches = core.permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, ph, pw)
    perm = torch.stack([torch.randperm(grid * grid, generator=generator) for _ in range(n)])
    shuffled = patches[torch.arange(n)[:, None], perm]
    back = (
        shuffled.reshape(n, grid, grid, c, ph, pw)
        .permute(0, 3, 1, 4, 2, 5)
        .reshape(n, c, ph * grid, pw * grid)
    )
    out[:, :, : ph * grid, : pw * grid] = back
    return out


def builtin_set(name: str, test_x: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """Built-in set ``name`` (one of :data:`FAR_SETS` or ``corrupted:<corruption>``) of ``n``
    uint8 images shaped like ``test_x`` (uint8 (M, C, H, W)); the sets made from test images
    use its first ``n`` rows."""
    c, h, w = test_x.shape[1:]
    if name == "uniform_noise":
        return torch.randint(0, 256, (n, c, h, w), generator=generator, dtype=torch.uint8)
    if name == "gaussian_noise":
        z = torch.randn((n, c, h, w), generator=generator) * 64 + 128
        return z.round().clamp(0, 255).to(torch.uint8)
    if name == "photos":
        return photo_crops(n, (h, w), c, generator)
    base = test_x[:n]
    if name == "inverted":
        return 255 - base
    if name == "patch_shuffled":
        return patch_shuffle(base, generator)
    if name.startswith("corrupted:"):
        fn = CORRUPTIONS.get(name.split(":", 1)[1])
        out = fn(to_float(base), 5, generator)
        return (out * 255).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"unknown built-in out-of-distribution set {name!r}")


def load_user_set(name: str, spec: dict[str, Any]) -> Tensor:
    """The images of a user's set ``{dataset: <registered dataset>, root: <path>, <loader
    options>...}``: the loader's training and test images together, uint8 (N, C, H, W).

    Raises ValueError naming ``sets.<name>`` for a missing key, an unknown dataset, a
    loader error or an empty set.
    """
    where = f"sets.{name}"
    if not isinstance(spec, dict) or "dataset" not in spec:
        raise ValueError(f"{where} needs `dataset` (one of {', '.join(DATASETS.names())}) and `root`")
    opts = dict(spec)
    dataset = str(opts.pop("dataset"))
    root = opts.pop("root", None)
    if dataset not in DATASETS.names():
        raise ValueError(
            f"{where}.dataset: unknown dataset {dataset!r}; choose from {', '.join(DATASETS.names())}"
        )
    if root is None or not Path(root).exists():
        raise ValueError(f"{where}.root: {root!r} does not exist")
    try:
        raw = DATASETS.get(dataset)(Path(root), **opts)
    except Exception as e:  # any loader failure is this setting's error, said with its cause
        raise ValueError(f"{where}: cannot read {dataset} at {root}: {e}") from e
    parts = [x for x in (raw.train_x, raw.test_x) if len(x)]
    if not parts:
        raise ValueError(f"{where}: {dataset} at {root} has no images")
    if len(parts) == 2 and parts[0].shape[1:] != parts[1].shape[1:]:
        h, w = parts[0].shape[2:]
        parts[1] = convert_images(parts[1], size=(int(h), int(w)), channels=parts[0].shape[1])
    return torch.cat(parts)


def fit_to_model(x: Tensor, channels: int, size: tuple[int, int]) -> tuple[Tensor, str]:
    """``x`` uint8 (N, C, H, W) converted to ``channels`` and ``size`` (bilinear, luminance or
    channel repetition; see :func:`convert_images`), and a sentence saying what changed ("" if
    nothing)."""
    c, h, w = x.shape[1:]
    if (c, h, w) == (channels, *size):
        return x, ""
    out = convert_images(x, size=size, channels=channels)
    return out, f"converted from {c} x {h} x {w} to the model's {channels} x {size[0]} x {size[1]}"


def sample_rows(n_total: int, n: int, generator: torch.Generator) -> Tensor:
    """Sorted positions of ``min(n, n_total)`` rows drawn without replacement."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=generator)[: max(0, n)].sort().values
