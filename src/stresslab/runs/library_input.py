"""A timm or torchvision model probed with its own weights file, on the inputs it expects.

``model.name: timm:<model>`` (or ``torchvision:<model>``) with ``model.weights: FILE`` and
``train.epochs: 0`` probes the library's model with those weights as they are: the images
are brought to its input size with its centre crop, and it normalizes them with the mean and
std of its pretrained config (see :mod:`stresslab.models.preprocessing`), not with the
statistics of the data. Settings the config gives (``data.image_size``, ``data.crop_pct``)
win. A run that trains (fine-tunes) keeps the data's size and statistics, as before.
"""

from __future__ import annotations

import dataclasses
import logging

from stresslab.data import DATASETS
from stresslab.data.base import Split
from stresslab.models.hub import is_hub_name
from stresslab.models.preprocessing import Preprocessing, hub_preprocessing
from stresslab.runs.config import RunConfig

__all__ = ["library_input", "with_library_normalization"]

log = logging.getLogger(__name__)


def library_input(cfg: RunConfig, checkpoint: object) -> tuple[RunConfig, Preprocessing | None]:
    """``cfg`` with ``data.image_size`` (and ``data.crop_pct`` for a loader that takes it)
    from the library's pretrained config where unset, and that preprocessing; ``cfg`` and
    ``None`` unless a ``timm:`` / ``torchvision:`` model is probed (``train.epochs`` 0, no
    ``checkpoint``) with its own ``model.weights``."""
    m = cfg.model
    if not (m.weights and is_hub_name(m.name) and cfg.train.epochs == 0 and checkpoint is None):
        return cfg, None
    prep = hub_preprocessing(m.name, m.args)
    if prep is None:
        return cfg, None
    update: dict[str, object] = {}
    if cfg.data.image_size is None:
        update["image_size"] = prep.size
        if cfg.data.crop_pct is None and "crop_pct" in DATASETS.get(cfg.data.dataset).options:
            update["crop_pct"] = prep.crop_pct
    if cfg.data.channels is None:
        update["channels"] = 3
    log.info("%s with its weights: input and normalization from %s", m.name, prep.source)
    data = cfg.data.model_copy(update=update)
    return cfg.model_copy(update={"data": data}), prep


def with_library_normalization(split: Split, prep: Preprocessing) -> None:
    """Set ``split.info``'s mean and std (which the model's Normalize layer takes) to the
    library's, in place, when their channel count fits the images'."""
    if len(prep.mean) != split.info.channels:
        log.warning(
            "the library's normalization has %d channels, the images %d: the data's statistics are used",
            len(prep.mean),
            split.info.channels,
        )
        return
    split.info = dataclasses.replace(split.info, mean=prep.mean, std=prep.std)
