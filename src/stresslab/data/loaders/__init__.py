"""Dataset loaders, one module each; importing this package registers them in :data:`DATASETS`.

See :mod:`stresslab.data.loaders.base` for the loader contract and how to add one.
"""

# Import order is registration order, which is the order ``DATASETS.names()`` lists.
# isort: off
from stresslab.data.loaders import fashion_mnist, cifar, svhn, stl10, image_folder, npz

# isort: on
from stresslab.data.loaders.base import (
    DATASETS,
    LOADER_OPTIONS,
    DatasetLoader,
    RawDataset,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "LOADER_OPTIONS",
    "DatasetLoader",
    "RawDataset",
    "cifar",
    "fashion_mnist",
    "image_folder",
    "npz",
    "register_dataset",
    "stl10",
    "svhn",
]
