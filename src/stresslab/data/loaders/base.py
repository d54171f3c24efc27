"""The loader contract: :class:`RawDataset`, the :data:`DATASETS` registry and its decorator.

A loader is a function ``load(root, *, <options>) -> RawDataset`` that returns a dataset's
official train and test sets. It declares the options it uses as keyword-only parameters,
taken from :data:`LOADER_OPTIONS`; :func:`register_dataset` reads them once, and
:func:`~stresslab.data.split.load_split` passes a loader only those, refusing with a
:class:`~stresslab.errors.ConfigError` an option the user set that the dataset does not use.
Adding a dataset is one function in one file under ``loaders/``::

    @register_dataset("my_data")
    def load_my_data(root: Path | None, *, download: bool = False) -> RawDataset: ...

plus its import in ``loaders/__init__.py`` (import order is the listing order).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from stresslab.errors import ConfigError
from stresslab.registry import Registry

#: Where a loader downloads to when ``download=True`` and no root is given.
DEFAULT_DOWNLOAD_ROOT = Path("data")

#: Every option a loader may declare, with what it means to the loader.
LOADER_OPTIONS: dict[str, str] = {
    "download": "fetch the files where they are missing (needs a network)",
    "skip_bad": "leave out unreadable files instead of failing",
    "image_size": "size hint while decoding images of varying sizes",
    "channels": "channel-count hint while decoding images of varying modes",
    "class_names": "a trained model's classes, in label order, that class folders are matched to by name",
    "crop_pct": "resize the shorter side to image_size / crop_pct, then centre-crop (a model's own)",
    "cache": "decode once into the on-disk uint8 cache (data.cache, data.cache_dir)",
}
#: Options that :func:`load_split` also applies itself to every dataset (resizing and
#: channel conversion), so a loader that does not take them is not an error.
SPLIT_OPTIONS = frozenset({"image_size", "channels"})


@dataclass
class RawDataset:
    """A dataset's official train and test sets, as a loader returns them.

    Images are uint8 tensors (N, C, H, W), labels int64 tensors (N,) in
    ``0 .. len(class_names) - 1``. ``background`` is the plain-background pixel value in
    [0, 1] where the dataset has one (Fashion-MNIST: 0.0), else ``None``. ``skipped`` lists
    files a loader left out (``skip_bad=True``). Datasets with a class hierarchy (CIFAR-100's
    20 superclasses) also give ``train_coarse`` / ``test_coarse``, int64 (N,) in
    ``0 .. len(coarse_names) - 1``, one superclass per image; ``None`` elsewhere.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    class_names: tuple[str, ...]
    source: str
    background: float | None = None
    skipped: list[str] = field(default_factory=list)
    train_coarse: Tensor | None = None
    test_coarse: Tensor | None = None
    coarse_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DatasetLoader:
    """A registered loader: the function and the options (keyword parameters) it declares."""

    name: str
    load: Callable[..., RawDataset]
    options: frozenset[str]

    def __call__(self, root: Path | None, **options: Any) -> RawDataset:
        """Call the loader with ``root`` and only the options it declares.

        Raises ConfigError naming the option and the dataset for an option it does not take.
        """
        unknown = sorted(set(options) - self.options)
        if unknown:
            raise ConfigError(self.refusal(unknown[0]))
        return self.load(root, **options)

    def refusal(self, option: str) -> str:
        """The message for setting ``option`` on a dataset that does not use it."""
        takes = ", ".join(sorted(self.options)) or "none"
        return (
            f"data.{option} is set, but dataset {self.name!r} does not use it "
            f"(options {self.name} takes: {takes}); remove data.{option} from the config"
        )


DATASETS: Registry[DatasetLoader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[Callable[..., RawDataset]], Callable[..., RawDataset]]:
    """Decorator: register a loader under ``name``, reading its options from its signature.

    The function takes ``root`` positionally and its options keyword-only, each named in
    :data:`LOADER_OPTIONS` with a default; anything else is a programming error (TypeError
    at import). The function itself is returned unchanged, so it can be called directly.
    """

    def deco(fn: Callable[..., RawDataset]) -> Callable[..., RawDataset]:
        params = list(inspect.signature(fn).parameters.values())
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise TypeError(f"loader {name!r}: the first parameter must be the positional `root`")
        options = params[1:]
        for p in options:
            if p.kind is not p.KEYWORD_ONLY or p.name not in LOADER_OPTIONS or p.default is p.empty:
                raise TypeError(
                    f"loader {name!r}: parameter {p.name!r} must be keyword-only with a default and one "
                    f"of {', '.join(LOADER_OPTIONS)}"
                )
        DATASETS.register(name)(DatasetLoader(name, fn, frozenset(p.name for p in options)))
        return fn

    return deco
