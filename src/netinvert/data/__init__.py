"""Datasets: a registry of named loaders returning in-memory tensors in [0, 1]."""

from . import _digits  # noqa: F401  (registers "digits")
from ._base import DATASETS, Dataset, list_datasets, load_dataset, register_dataset

__all__ = ["Dataset", "DATASETS", "list_datasets", "load_dataset", "register_dataset"]
