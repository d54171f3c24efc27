"""The Python API: :func:`run` a study, :func:`probe` a model already in memory, :func:`load`
a finished run. Each returns a :class:`~stresslab.runs.loaded.Run`.

``stresslab run`` (the command) is a thin layer over :func:`run`. Nothing here prints: the
library logs (to the ``stresslab`` logger, silent unless the caller configures logging) and
shows rich progress bars only with ``progress=True``.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stresslab.data.base import DatasetInfo, Split, to_float
from stresslab.data.coverage import coverage_warnings
from stresslab.data.stats import channel_stats
from stresslab.devices import pick_device
from stresslab.errors import ConfigError, DataError, StresslabError
from stresslab.models.base import Normalize
from stresslab.plugins import load_plugins
from stresslab.probes import PROBES, build_probe
from stresslab.runs import config as config_mod
from stresslab.runs.config import PRESETS, RunConfig
from stresslab.runs.directory import RunDir
from stresslab.runs.execute import RunOutcome, execute, execute_prepared
from stresslab.runs.from_checkpoint import checkpoint_base
from stresslab.runs.given_model import as_module, normalize_layer, output_classes, wrap
from stresslab.runs.inputs import as_pair, check_label_range
from stresslab.runs.loaded import Run
from stresslab.runs.prepare import Prepared, check_probes, on_test_split, probe_order, skip_without_training

__all__ = ["IN_MEMORY", "load", "probe", "run"]

IN_MEMORY = "in_memory"
"""The dataset name a :func:`probe` run records: its data came from memory."""

ProbesSpec = str | Sequence[str] | Mapping[str, Mapping[str, Any] | None]


def run(
    config: str | Path | Mapping[str, Any] | RunConfig | None = None,
    *,
    preset: str | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = False,
) -> Run:
    """What ``stresslab run`` does: train (or load) a model, run the probes, write the report.

    Args:
        config: a YAML file, its content as a mapping, or a :class:`RunConfig`; ``None``
            for the defaults (the Fashion-MNIST study).
        preset: ``"quick"`` or ``"default"``, applied under ``config``.
        overrides: ``["train.epochs=3", ...]`` (values parsed as YAML, like ``--set``) or
            ``{"train.epochs": 3, ...}``, applied over ``config``.
        out: the run directory (default ``runs/<name>-<UTC time>``).
        checkpoint: stress-test this saved model; no training. Without ``config``, a
            stresslab checkpoint brings its own model, and an image folder given as
            ``data.root`` (``test/<class>/`` or ``<class>/`` folders alone will do) is matched
            to its class names by name (see :mod:`stresslab.runs.from_checkpoint`).
        resume: continue this interrupted run directory with its own config (then give
            none of the above).
        progress: show rich progress bars (terminal or notebook).

    Returns:
        The finished :class:`Run`. Probes that raised are listed in ``Run.failed_probes``
        (the others' results are kept); any other failure raises, leaving ``RUN_DIR/FAILED``.

    Raises:
        ConfigError, DataError, CheckpointError: a mistake found before the run directory
            is created (nothing is written), naming the field, file or value.
    """
    load_plugins()
    if resume is not None:
        if config is not None or preset or overrides or checkpoint is not None or out is not None:
            raise StresslabError("resume: the run directory's own config is used; give nothing else")
        recorded = config_mod.resolve(RunDir.open(resume).config)
        if recorded.data.dataset == IN_MEMORY:
            raise StresslabError(
                f"resume: {resume} was made by stresslab.probe() from data in memory; call probe() again"
            )
        return _finished(execute(RunConfig(), resume=resume, show_progress=progress))
    source = config_mod.to_dict(config) if isinstance(config, RunConfig) else config
    base = None
    if checkpoint is not None and source is None:  # the checkpoint says what it is
        plain = config_mod.resolve(None, preset, overrides)
        if config_mod.resolve(None, preset).model == plain.model:  # unless told another model
            base = checkpoint_base(checkpoint, plain.data.root)
    cfg = config_mod.resolve(source, preset, overrides, base=base)
    return _finished(execute(cfg, out=out, checkpoint=checkpoint, show_progress=progress))


def _finished(outcome: RunOutcome) -> Run:
    """The run read back; checks that could not be evaluated (an unknown key) raise here,
    after the run directory is complete (``stresslab check`` evaluates them again)."""
    if outcome.checks_error:
        raise ConfigError(
            f"{outcome.run_dir.path}: the run is complete, its checks are not: {outcome.checks_error}"
        )
    return Run(outcome.run_dir.path)


def load(run_dir: str | Path) -> Run:
    """Read a run directory back (complete, failed or interrupted) as a :class:`Run`."""
    return Run(run_dir)


def _probes(probes: ProbesSpec) -> Any:
    """A preset's probes (``"quick"``, ``"default"``), one probe's name, a list or a mapping."""
    if isinstance(probes, str):
        if probes in PRESETS:
            return PRESETS[probes].get("probes", config_mod.RunConfig().probes)
        if probes in PROBES:
            return {probes: {}}
        raise ConfigError(
            f"probes: {probes!r} is neither a preset ({', '.join(PRESETS)}) nor a probe "
            f"({', '.join(PROBES.names())}); give a preset, a list of probes or {{probe: settings}}"
        )
    return probes


def _class_names(class_names: Sequence[str] | None, k: int) -> tuple[str, ...]:
    if class_names is None:
        return tuple(str(i) for i in range(k))
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ConfigError(f"class_names: expected a list of {k} names, got {type(class_names).__name__}")
    if len(class_names) != k:
        raise ConfigError(f"class_names: {len(class_names)} names, but the model gives {k} logits per image")
    return tuple(str(n) for n in class_names)


def _stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units (a constant channel's std is set to 1)."""
    if x.dtype == torch.uint8:
        mean, std = channel_stats(x)
    else:
        flat = x.double().transpose(0, 1).reshape(x.shape[1], -1)
        mean = tuple(flat.mean(dim=1).tolist())
        std = tuple(flat.std(dim=1, unbiased=False).tolist())
    return mean, tuple(s if s > 0 else 1.0 for s in std)


def _split(
    test: tuple[Tensor, Tensor],
    parts: dict[str, tuple[Tensor, Tensor] | None],
    names: tuple[str, ...],
    background: float | None,
) -> Split:
    x = test[0]
    empty = (x.new_empty((0, *x.shape[1:])), torch.empty(0, dtype=torch.long))
    train, val = parts["train"] or empty, parts["val"] or empty
    mean, std = _stats(train[0] if len(train[0]) else x)
    info = DatasetInfo(
        name=IN_MEMORY,
        class_names=names,
        channels=int(x.shape[1]),
        height=int(x.shape[2]),
        width=int(x.shape[3]),
        mean=mean,
        std=std,
        source=f"in memory: {len(x)} test, {len(train[1])} training, {len(val[1])} validation images",
        background=background,
    )
    warnings = coverage_warnings(train[1], test[1], names, IN_MEMORY) if len(train[1]) else []
    return Split(info, train[0], train[1], val[0], val[1], x, test[1], warnings=warnings)


def _probe_target(out: str | Path | None, batch_size: Any, background: Any) -> Path | None:
    """:func:`probe`'s run directory (``None``: a temporary one), after checking its
    arguments and that ``out`` may receive a new run; before any work, nothing written."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if background is not None and not (isinstance(background, (int, float)) and 0 <= background <= 1):
        raise ConfigError(f"background: expected a pixel value in [0, 1] or None, got {background!r}")
    target = Path(out) if out is not None else None
    if target is not None:
        RunDir.check_new(target)
    return target


@contextmanager
def _moved_to(module: nn.Module, dev: torch.device) -> Iterator[None]:
    """Inside the block ``module`` is on ``dev``; afterwards it is in its mode again and back
    on the device of its first parameter or buffer."""
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    home = first.device if first is not None else None  # `.to` moves parameters in place
    was_training = module.training
    try:
        module.to(dev)
        yield
    finally:
        module.train(was_training)
        if home is not None and home != dev:
            module.to(home)


def _checked_class_names(
    module: nn.Module,
    norm: Normalize | None,
    sample: Tensor,
    class_names: Sequence[str] | None,
    test_y: Tensor,
    parts: dict[str, tuple[Tensor, Tensor] | None],
) -> tuple[str, ...]:
    """The K class names, K the number of logits the model gives ``sample``; DataError when
    a label of the test set (or of ``parts``) is outside 0..K-1."""
    k = output_classes(module, norm, sample)
    names = _class_names(class_names, k)
    why = f"class_names has {k} names" if class_names is not None else f"the model gives {k} logits"
    labelled = {"test": test_y, **{arg: part[1] for arg, part in parts.items() if part is not None}}
    for arg, labels in labelled.items():
        check_label_range(labels, k, arg, why)
    return names


def _probe_config(
    model: object, name: str | None, seed: int, dev: torch.device, batch_size: int, probes: ProbesSpec
) -> RunConfig:
    """The run configuration of :func:`probe`: no data to load, no training, ``probes`` run;
    named ``name``, else ``probe-<model's name or class>``."""
    label = name or f"probe-{getattr(model, '__name__', None) or type(model).__name__}"
    return config_mod.validate(
        {
            "name": label,
            "seed": seed,
            "device": str(dev),
            "data": {"dataset": IN_MEMORY},
            "model": {"name": type(model).__name__},
            "train": {"epochs": 0, "eval_batch_size": batch_size},
            "probes": _probes(probes),
        },
        "stresslab.probe",
    )


def _folder_test_set(
    folder: str | Path, class_names: Sequence[str] | None, image_size: int | None, crop_pct: float | None
) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """The images (N, C, H, W) uint8 and labels (N,) of an image folder (``test/<class>/``,
    ``<class>/`` or ``train/`` + ``test/``: its test set), its class folders matched to
    ``class_names`` by name (without them: the sorted folder names), and the class names."""
    from stresslab.data import load_split

    split = load_split(
        "image_folder",
        root=str(folder),
        val_fraction=0.0,
        class_names=class_names,
        image_size=image_size,
        crop_pct=crop_pct,
    )
    return split.test_x, split.test_y, split.info.class_names


def _given_sets(
    test: Any, train: Any, val: Any
) -> tuple[Tensor, Tensor, dict[str, tuple[Tensor, Tensor] | None]]:
    """The test images (N, C, H, W) and labels (N,) of :func:`probe`, and its ``train`` and
    ``val`` sets (``None`` where not given), whose images must have the test images' shape."""
    x, y = as_pair(test, "test")
    parts = {arg: as_pair(v, arg) if v is not None else None for arg, v in (("train", train), ("val", val))}
    for arg, part in parts.items():
        if part is not None and part[0].shape[1:] != x.shape[1:]:
            shape, want = tuple(part[0].shape[1:]), tuple(x.shape[1:])
            raise DataError(f"{arg}: images are {shape} (C, H, W), the test images {want}")
    return x, y, parts


def probe(
    model: nn.Module | Callable[[Tensor], Tensor],
    test: Any,
    *,
    train: Any = None,
    val: Any = None,
    class_names: Sequence[str] | None = None,
    probes: ProbesSpec = "quick",
    out: str | Path | None = None,
    normalize: tuple[Any, Any] | None = None,
    background: float | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    seed: int = 0,
    name: str | None = None,
    progress: bool = False,
    image_size: int | None = None,
    crop_pct: float | None = None,
) -> Run:
    """Stress-test a model already in memory: no training, no files needed.

    Args:
        model: an ``nn.Module`` (or a callable) mapping float images (N, C, H, W) to logits
            (N, K); the images are in [0, 1], or normalized by ``normalize`` when it is
            given. A stresslab ``Classifier`` is
            used as it is; any other module gets ``features()`` (the input of its last
            ``nn.Linear``) and Grad-CAM's layer (its last ``nn.Conv2d``) found for it.
        test: ``(images, labels)`` as NumPy arrays or torch tensors, or a torch ``Dataset``
            of ``(image, label)`` items. Images NCHW, NHWC or NHW with 1 or 3 channels, uint8
            (0..255) or float in [0, 1]; labels integer class indices (N,) in 0..K-1. Or a
            folder of images (``test/<class>/`` or ``<class>/``), its class folders matched
            to ``class_names`` by name (a ``/`` in a class name is written ``_``).
        train: the training set, in the same forms (optional): only its labels (for the
            class-coverage warnings) and its per-channel statistics (baselines of some
            attribution methods; the test set's otherwise) are used.
        val: a validation set (optional), for the calibration probe's temperature scaling.
        class_names: K names (default ``"0"``..``"K-1"``).
        probes: a preset's probes (``"quick"``, the default, or ``"default"``), a list of
            probe names, or ``{probe: settings}`` as in a config's ``probes`` section.
        out: a new run directory; ``None`` writes to a temporary one that lives as long as
            the returned Run (keep it with ``Run.save``).
        normalize: ``(mean, std)`` per channel (or one number each) when the model expects
            normalized images: stresslab puts a Normalize layer in front of it.
        background: the pixel value in [0, 1] of a plain background, where the images have
            one (Fashion-MNIST: 0.0): the explain probe then measures how much attribution
            falls on it.
        batch_size: images per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``...; ``None`` keeps the model's device.
        seed: seeds every random draw of the probes.
        name: the run's name (default ``probe-<model class>``).
        progress: show rich progress bars.
        image_size, crop_pct: for a folder ``test``, the side of the square images the
            model takes (default: the folder's most common size) and, when given, the
            share of the resized shorter side kept by the centre crop (timm's ``crop_pct``).

    Returns:
        The finished :class:`Run`. The model is left on its device and in its mode.

    Raises:
        DataError: bad images or labels, naming the argument (``test``, ``train``, ``val``).
        ConfigError: a bad model, probe setting or argument, naming it.
    """
    module = as_module(model)
    target = _probe_target(out, batch_size, background)
    dev = pick_device(device, module)
    load_plugins()
    cfg = _probe_config(model, name, seed, dev, batch_size, probes)
    built = {n: build_probe(n, settings) for n, settings in cfg.probes.items()}
    probe_order(list(built))

    if isinstance(test, (str, Path)):
        fx, fy, folder_names = _folder_test_set(test, class_names, image_size, crop_pct)
        test, class_names = (fx, fy), folder_names
    x, y, parts = _given_sets(test, train, val)
    norm = normalize_layer(normalize, int(x.shape[1]))
    keep = None
    with _moved_to(module, dev):
        norm = norm.to(dev) if norm is not None else None
        sample = to_float(x[:2]).to(dev)
        names = _checked_class_names(module, norm, sample, class_names, y, parts)
        split = _split((x, y), parts, names, None if background is None else float(background))
        wrapped = wrap(module, split.info, norm).to(dev)
        skipped = skip_without_training(built, split)
        check_probes(built, wrapped, sample)
        if target is None:
            keep = tempfile.TemporaryDirectory(prefix="stresslab-probe-")
            target = Path(keep.name)
        prep = Prepared(cfg, built, dev, split, wrapped, meta={}, ready=True, skipped=skipped)
        prep.on_test_split = on_test_split(built, split)
        execute_prepared(prep, target, show_progress=progress)
    return Run(target, keep_alive=keep)
