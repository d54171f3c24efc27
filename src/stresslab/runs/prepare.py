"""Everything a run needs before it writes anything: checked settings, data, model.

:func:`prepare` is the one place a run fails on a mistake in its config: unknown probes
or probe settings, an unknown dataset or model, a bad device, missing or corrupt data,
model arguments the model does not take, a checkpoint that does not fit, probe settings the
model cannot serve (each probe's ``check``). The runner creates the run directory only
after it returned.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from stresslab.data import DATASETS, load_split
from stresslab.data.base import Split, to_float
from stresslab.data.cache import CacheSettings
from stresslab.devices import model_device, pick_device
from stresslab.errors import ConfigError, StresslabError
from stresslab.models import build_model, check_model_name
from stresslab.models.weights import check_compatible, load_checkpoint, load_weights
from stresslab.plugins import load_plugins
from stresslab.probes import PROBES, build_probe
from stresslab.probes.base import Probe
from stresslab.runs import config as config_mod
from stresslab.runs.checks import check_before_run
from stresslab.runs.config import RunConfig
from stresslab.runs.library_input import library_input, with_library_normalization

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A run ready to go: its probes built, data loaded, model built (and loaded from
    ``checkpoint`` with its ``history`` when one was given). ``ready`` marks a model that
    comes trained from memory (:func:`stresslab.probe`): the run never trains it."""

    cfg: RunConfig
    probes: dict[str, Probe]
    device: torch.device
    split: Split
    model: nn.Module
    meta: dict[str, Any]
    checkpoint: Path | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    ready: bool = False  # a trained model handed over in memory: never trained, no checkpoint
    skipped: dict[str, str] = field(default_factory=dict)  # probe -> why it did not run
    on_test_split: dict[str, str] = field(default_factory=dict)  # probe -> how it uses the test set


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def probe_order(names: list[str]) -> list[str]:
    """Configured probes with each one's configured requirements first (stable otherwise)."""
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in stack:
            raise StresslabError(f"probe requirements form a cycle: {' -> '.join((*stack, name))}")
        for req in PROBES.get(name).requires:
            if req in names:
                visit(req, (*stack, name))
        order.append(name)

    for n in names:
        visit(n, ())
    return order


def check_probes(probes: Mapping[str, Probe], model: nn.Module, sample: Tensor) -> None:
    """Each probe's :meth:`~stresslab.probes.base.Probe.check` on ``model``, in order.

    ``sample`` is a few images (N, C, H, W), float in [0, 1], on the model's device. A probe
    may resolve its settings in place; the first ConfigError stops the run before anything
    is written.
    """
    for probe in probes.values():
        probe.check(model, sample)


def skip_without_training(probes: dict[str, Probe], split: Split) -> dict[str, str]:
    """Where ``split`` has no training images, remove from ``probes`` (in place) each probe
    whose :meth:`~stresslab.probes.base.Probe.needs_training_data` gives a reason; return
    ``{probe: reason}`` for the report (empty when there are training images)."""
    if len(split.train_y):
        return {}
    skipped = {name: why for name, p in probes.items() if (why := p.needs_training_data()) is not None}
    for name, why in skipped.items():
        del probes[name]
        log.warning("probe %s skipped: %s", name, why)
    return skipped


def on_test_split(probes: Mapping[str, Probe], split: Split) -> dict[str, str]:
    """Where ``split`` has no training images, ``{probe: how}`` for each probe of ``probes``
    (those left after :func:`skip_without_training`) that takes a split of the test set
    instead (:meth:`~stresslab.probes.base.Probe.without_training_data`), for the report;
    empty when there are training images."""
    if len(split.train_y):
        return {}
    out = {name: how for name, p in probes.items() if (how := p.without_training_data()) is not None}
    for name, how in out.items():
        log.info("probe %s without training images: %s", name, how)
    return out


def _check_trainable(cfg: RunConfig, split: Split, checkpoint: str | Path | None) -> None:
    """ConfigError when the run would train on a split without training images."""
    if checkpoint is None and cfg.train.epochs > 0 and not len(split.train_y):
        where = cfg.data.root or cfg.data.dataset
        raise ConfigError(
            f"data: {where} holds no training images (test images only), so nothing can be trained "
            "(train.epochs > 0): give the trained model with --checkpoint MODEL"
        )


def check_sample(split: Split, model: nn.Module) -> Tensor:
    """Two test images (train images where the test set is empty) as floats in [0, 1],
    (N, C, H, W), on the device of ``model``'s first parameter or buffer."""
    images = split.test_x if len(split.test_x) else split.train_x
    return to_float(images[:2]).to(model_device(model))


def load_data(cfg: RunConfig) -> Split:
    """The run's train / validation / test split from ``cfg.data``."""
    d = cfg.data
    return load_split(
        d.dataset,
        root=d.root,
        val_fraction=d.val_fraction,
        split_seed=d.split_seed,
        train_subset=d.train_subset,
        test_subset=d.test_subset,
        image_size=d.image_size,
        channels=d.channels,
        skip_bad=d.skip_bad,
        download=d.download,
        drop_train_indices=d.drop_train_indices,
        relabel=d.relabel,
        class_names=d.class_names,
        crop_pct=d.crop_pct,
        cache=CacheSettings(d.cache, d.cache_dir),
    )


def model_meta(cfg: RunConfig, split: Split) -> dict[str, Any]:
    """What a checkpoint records so it can be loaded and checked without the config."""
    info = split.info
    return {
        "model": {"name": cfg.model.name, "args": cfg.model.args, "source": cfg.model.source},
        "class_names": list(info.class_names),
        "channels": info.channels,
        "image_size": [info.height, info.width],
        "config": config_mod.to_dict(cfg),
    }


def prepare(cfg: RunConfig, checkpoint: str | Path | None = None) -> Prepared:
    """Check ``cfg``, load the data, build the model (and load ``checkpoint``); write nothing.

    Plugins come first (entry points and ``cfg.plugins``, see :func:`load_plugins`), then the
    cheap checks (probe names and settings, dataset and model names, device),
    then the data is loaded and the model built. Raises :class:`ConfigError`,
    :class:`DataError` or :class:`CheckpointError` naming the field, file or value at fault.
    """
    load_plugins(cfg.plugins)
    probes = {name: build_probe(name, settings) for name, settings in cfg.probes.items()}
    probe_order(list(probes))
    DATASETS.get(cfg.data.dataset, where="data.dataset")
    if not cfg.model.source:
        check_model_name(cfg.model.name)
    from stresslab.runs.tracking import check_trackers

    check_trackers(cfg.tracking)
    try:
        device = pick_device(cfg.device)
    except RuntimeError as e:
        raise ConfigError(f"device: {cfg.device!r} is not a device torch knows ({e})") from None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)

    cfg, library = library_input(cfg, checkpoint)
    log.info("loading data: %s", cfg.data.dataset)
    split = load_data(cfg)
    if library is not None:
        with_library_normalization(split, library)
    info = split.info
    check_before_run(cfg.checks, probes, split.test_index.numpy())
    log.info(
        "%s: %d train, %d validation, %d test images, %d classes, %dx%dx%d",
        info.name,
        len(split.train_y),
        len(split.val_y),
        len(split.test_y),
        info.num_classes,
        info.channels,
        info.height,
        info.width,
    )
    _check_trainable(cfg, split, checkpoint)
    # A checkpoint replaces every weight: the model's own weights file is not read then.
    weights = cfg.model.weights if checkpoint is None else None
    model = build_model(cfg.model.name, info, cfg.model.args, cfg.model.source, weights)
    prep = Prepared(cfg, probes, device, split, model, model_meta(cfg, split))
    prep.skipped = skip_without_training(probes, split)
    prep.on_test_split = on_test_split(probes, split)
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        check_compatible(ckpt, cfg.model.name, info, checkpoint)
        load_weights(model, ckpt["state_dict"], checkpoint)
        prep.checkpoint = Path(checkpoint)
        prep.history = list(ckpt.get("history", []))
    check_probes(probes, model, check_sample(split, model))
    return prep
