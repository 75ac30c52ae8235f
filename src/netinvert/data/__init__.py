"""Datasets: a registry of named loaders returning in-memory tensors in [0, 1].

Registered: ``digits`` (embedded), ``fashion-mnist``, ``mnist``, ``kmnist``, ``cifar10``, ``svhn`` and
``image-folder``. :func:`dataset_status` says whether a dataset's files are here without
loading them; ``netinvert datasets`` prints it for every name.
"""

from . import _cifar, _digits, _idx, _image_folder, _svhn  # noqa: F401  (each registers its names)
from ._base import (
    DATASETS,
    Dataset,
    DatasetSource,
    DatasetStatus,
    dataset_status,
    list_datasets,
    load_dataset,
    register_dataset,
)
from ._files import DATA_ENV
from ._idx import read_idx

__all__ = [
    "Dataset",
    "DatasetStatus",
    "DatasetSource",
    "DATASETS",
    "DATA_ENV",
    "dataset_status",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "register_dataset",
]
