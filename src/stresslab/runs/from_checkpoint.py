"""The config a stresslab checkpoint implies: ``stresslab run --checkpoint MODEL [--data-root DIR]``
without a config file.

A stresslab checkpoint records its model (name, arguments, source), its class names,
channels and input size, and the config it was trained with. Without a config file such a
checkpoint is probed, not trained (``train.epochs: 0``), with its own model; when
``--data-root`` names an image folder (``test/<class>/``, ``<class>/`` or ``train/<class>/``
folders of images) that folder is the data, its class folders matched to the checkpoint's
class names by name and its images brought to the checkpoint's input size (for a ``timm:`` or
``torchvision:`` model: the shorter side resized to ``size / crop_pct`` and the centre
cropped, ``crop_pct`` from the library's pretrained config). Otherwise the data is the one the
checkpoint was trained on. A plain state dict records none of this: it implies nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stresslab.data.loaders.image_folder import is_image_folder
from stresslab.errors import CheckpointError
from stresslab.models.preprocessing import hub_preprocessing
from stresslab.models.weights import load_checkpoint

__all__ = ["checkpoint_base"]

log = logging.getLogger(__name__)


def _folder_data(ckpt: dict[str, Any], model: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``data`` section probing an image folder with the checkpoint's classes, channels,
    input size and (timm / torchvision models) crop."""
    names = ckpt.get("class_names")
    if not isinstance(names, list) or not names:
        raise CheckpointError(f"{path}: records no class names to match the folder's class folders to")
    data: dict[str, Any] = {"dataset": "image_folder", "class_names": [str(n) for n in names]}
    if ckpt.get("channels") in (1, 3):
        data["channels"] = int(ckpt["channels"])
    size = ckpt.get("image_size")
    if isinstance(size, list) and len(size) == 2:
        if int(size[0]) != int(size[1]):
            raise CheckpointError(
                f"{path}: its input is {size[0]}x{size[1]}; image_folder makes square images"
            )
        data["image_size"] = int(size[0])
    prep = hub_preprocessing(str(model["name"]), model.get("args") or {})
    if prep is not None and "image_size" in data:
        data["crop_pct"] = prep.crop_pct
        log.info("preprocessing from %s: crop_pct %.3f", prep.source, prep.crop_pct)
    return data


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def checkpoint_base(checkpoint: str | Path, data_root: str | None) -> dict[str, Any] | None:
    """The base config (a mapping under presets and ``--set`` overrides) of probing
    ``checkpoint`` without a config file, ``data_root`` the ``--data-root`` given (or
    ``None``); ``None`` for a checkpoint that records no model (a plain state dict).

    Raises CheckpointError naming the file when it cannot be read, or records no class names
    for an image folder.
    """
    path = Path(checkpoint)
    ckpt = load_checkpoint(path)
    model = ckpt.get("model")
    if not isinstance(model, dict) or not model.get("name"):
        return None
    own = {k: model[k] for k in ("name", "args", "source") if model.get(k) is not None}
    recorded = _mapping(ckpt.get("config"))
    recorded_data = _mapping(recorded.get("data"))
    folder = data_root is not None and (
        recorded_data.get("dataset") == "image_folder" or is_image_folder(Path(data_root).expanduser())
    )
    data = _folder_data(ckpt, own, path) if folder else dict(recorded_data)
    dataset = data.get("dataset", "data")
    return {
        "name": f"{dataset}-{str(own['name']).replace(':', '-')}",
        "model": own,
        "data": data,
        "train": {"epochs": 0},
    }
