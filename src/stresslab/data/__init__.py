"""Datasets, splits and batched augmentation.

``load_split(name, ...)`` is the entry point; ``DATASETS.names()`` lists the loaders.
"""

from stresslab.data.augment import BatchAugment, hflip_batch, rotate_batch, translate_batch
from stresslab.data.base import DatasetInfo, Split, to_float
from stresslab.data.datasets import (
    DATASETS,
    DatasetLoader,
    RawDataset,
    channel_stats,
    convert_images,
    load_split,
)
from stresslab.data.sampling import stratified_sample

__all__ = [
    "DATASETS",
    "BatchAugment",
    "DatasetInfo",
    "DatasetLoader",
    "RawDataset",
    "Split",
    "channel_stats",
    "convert_images",
    "hflip_batch",
    "load_split",
    "rotate_batch",
    "stratified_sample",
    "to_float",
    "translate_batch",
]
