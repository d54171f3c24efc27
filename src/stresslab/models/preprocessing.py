"""The input a timm or torchvision model expects, from the library's own pretrained config.

A model trained on ImageNet-style photographs expects a square input of its own size (224
pixels for most), made by resizing the shorter side to ``size / crop_pct`` and cropping the
centre, then normalized by the mean and std of its training set. timm records these in each
model's pretrained config (``timm.data.resolve_model_data_config``); torchvision in its
weights' ``transforms`` (``ImageClassification``: ``resize_size``, ``crop_size``, ``mean``,
``std``). Nothing is downloaded: timm's config comes with the model's definition, and
torchvision's with the weights' enum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stresslab.errors import ConfigError

__all__ = ["Preprocessing", "hub_preprocessing"]


@dataclass(frozen=True)
class Preprocessing:
    """A model's evaluation preprocessing.

    ``size``: the side of its square input, pixels; ``crop_pct`` in (0, 1]: the shorter side
    is resized to ``size / crop_pct`` before the centre ``size`` x ``size`` is cropped;
    ``mean`` / ``std``: per-channel, in [0, 1] pixel units; ``source``: where they came from.
    """

    size: int
    crop_pct: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str


def _timm(name: str, arch: str, args: dict[str, Any]) -> Preprocessing:
    from stresslab.models.hub import _build_library_model, _factory_args, _library

    timm = _library("timm", name)
    model = _build_library_model(name, "timm", arch, _factory_args(name, "timm", arch, args))
    cfg = timm.data.resolve_model_data_config(model)
    _, height, width = cfg["input_size"]
    if height != width:
        raise ConfigError(f"model {name!r}: its input is {height}x{width}; stresslab probes square inputs")
    return Preprocessing(
        size=int(height),
        crop_pct=float(cfg.get("crop_pct") or 1.0),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        source=f"timm's pretrained config of {arch}",
    )


def _torchvision(arch: str) -> Preprocessing | None:
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(arch).DEFAULT  # type: ignore[attr-defined]
        transform = weights.transforms()
    except (ValueError, AttributeError, TypeError):
        return None  # no weights known for this architecture: no preprocessing to follow
    crop, resize = getattr(transform, "crop_size", None), getattr(transform, "resize_size", None)
    if not crop or not resize:
        return None
    return Preprocessing(
        size=int(crop[0]),
        crop_pct=min(1.0, int(crop[0]) / int(resize[0])),
        mean=tuple(float(v) for v in transform.mean),
        std=tuple(float(v) for v in transform.std),
        source=f"torchvision's {weights} transforms",
    )


def hub_preprocessing(name: str, args: dict[str, Any] | None = None) -> Preprocessing | None:
    """The evaluation preprocessing of ``timm:<model>`` / ``torchvision:<model>`` (built with
    ``args``, random init, to read timm's config); ``None`` for other names and for
    torchvision models without known weights. Raises ConfigError as :func:`build_hub_model`."""
    from stresslab.models.hub import check_hub_name, split_hub_name

    parsed = split_hub_name(name)
    if parsed is None:
        return None
    check_hub_name(name)
    library, arch = parsed
    return _timm(name, arch, dict(args or {})) if library == "timm" else _torchvision(arch)
