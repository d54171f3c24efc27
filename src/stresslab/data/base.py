"""The data contract: images as uint8 tensors (N, C, H, W), labels as int64 (N,)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from stresslab.data.indexed import Images


@dataclass(frozen=True)
class DatasetInfo:
    """What every part needs to know about a dataset.

    ``mean`` and ``std`` are per-channel statistics of the training images in [0, 1]
    (the model's internal Normalize layer uses them). ``background`` is the pixel value
    (in [0, 1]) of a plain background where the dataset has one (Fashion-MNIST: 0.0,
    declared by its loader; other datasets: read from the training images' borders, see
    :func:`~stresslab.data.stats.plain_background`), else ``None``; explanation probes use
    it to split attribution into object and background, the diagnosis to measure object
    and flat areas off it.

    ``coarse_names`` are the superclass names of a dataset with a class hierarchy (CIFAR-100:
    20), else ``None``; ``coarse_of[k]`` is then the superclass of class ``k`` (length
    ``num_classes``), -1 for a class that appears in no image, whose superclass is unknown.
    """

    name: str
    class_names: tuple[str, ...]
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""
    background: float | None = None
    coarse_names: tuple[str, ...] | None = None
    coarse_of: tuple[int, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_coarse(self) -> bool:
        """Whether the dataset has superclasses (``coarse_names`` and ``coarse_of``)."""
        return self.coarse_names is not None and self.coarse_of is not None


@dataclass
class Split:
    """Train, validation and test images with labels.

    Images are uint8 tensors of shape (N, C, H, W) (values 0..255); labels are int64
    tensors of shape (N,). ``train_index`` / ``val_index`` are the positions of the
    training and validation images in the dataset's official training set, and
    ``test_index`` the positions in its official test set, so a case keeps one identity
    across runs and subsets. ``skipped`` lists files a loader left out (``skip_bad``);
    ``warnings`` are sentences about the data that make results untrustworthy (a test class
    never seen in training, classes with few training images), already logged, for the top
    of the report. ``train_coarse`` / ``val_coarse`` / ``test_coarse`` are the superclass
    labels, int64 (N,) aligned with the labels, for datasets with ``info.coarse_names``
    (CIFAR-100), else ``None``.

    Images of a large dataset may be views of the on-disk cache (:mod:`stresslab.data.cache`,
    a copy-on-write memory map): read them in batches (``to_float(x[i : i + b])``), never
    convert a whole set to floats, and do not write into them. The training and validation
    images of a cached dataset are then an :class:`~stresslab.data.indexed.IndexedImages`
    (the cache and the kept rows' positions): indexing it copies just the rows asked for.
    """

    info: DatasetInfo
    train_x: Images
    train_y: Tensor
    val_x: Images
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    train_index: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    val_index: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    test_index: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    train_coarse: Tensor | None = None
    val_coarse: Tensor | None = None
    test_coarse: Tensor | None = None

    def __post_init__(self) -> None:
        if self.train_index.numel() == 0:
            self.train_index = torch.arange(len(self.train_y))
        if self.val_index.numel() == 0:
            self.val_index = torch.arange(len(self.val_y))
        if self.test_index.numel() == 0:
            self.test_index = torch.arange(len(self.test_y))


def to_float(x: Tensor) -> Tensor:
    """uint8 images (N, C, H, W) in 0..255 -> float32 in [0, 1] (floats pass through)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()
