"""Datasets, splits and batched augmentation.

``load_split(name, ...)`` is the entry point; ``DATASETS.names()`` lists the loaders (one
module each under ``loaders/``; ``register_dataset`` adds one).
"""

from stresslab.data.augment import BatchAugment, hflip_batch, rotate_batch, translate_batch
from stresslab.data.base import DatasetInfo, Split, to_float
from stresslab.data.convert import convert_images
from stresslab.data.loaders import DATASETS, DatasetLoader, RawDataset, register_dataset
from stresslab.data.sampling import stratified_sample
from stresslab.data.split import load_split
from stresslab.data.stats import channel_stats

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
    "register_dataset",
    "rotate_batch",
    "stratified_sample",
    "to_float",
    "translate_batch",
]
