"""The dataset record every loader returns, and the dataset registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._registry import Registry

__all__ = ["Dataset", "DATASETS", "register_dataset", "load_dataset", "list_datasets"]


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset held in memory as tensors.

    Images are float32 in [0, 1] with shape ``(N, C, H, W)``; labels are int64 class indices.
    ``mean``/``std`` are per-channel statistics of the training images: classifiers normalise
    internally with them, so inversion always works in plain [0, 1] pixel space.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    source: str = ""
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.mean:
            dims = (0, 2, 3)
            object.__setattr__(self, "mean", tuple(float(v) for v in self.x_train.mean(dims)))
            std = self.x_train.std(dims).clamp_min(1e-6)
            object.__setattr__(self, "std", tuple(float(v) for v in std))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
        """A random subset of the train and/or test split (for fast tests and small-data studies)."""
        g = torch.Generator().manual_seed(seed)

        def pick(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
            if n is None or n >= len(x):
                return x, y
            idx = torch.randperm(len(x), generator=g)[:n]
            return x[idx], y[idx]

        xtr, ytr = pick(self.x_train, self.y_train, n_train)
        xte, yte = pick(self.x_test, self.y_test, n_test)
        return Dataset(self.name, xtr, ytr, xte, yte, self.class_names, self.source, self.mean, self.std)

    def describe(self) -> dict:
        """Plain-JSON summary stored in run cards."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "class_names": list(self.class_names),
            "n_train": len(self.x_train),
            "n_test": len(self.x_test),
            "mean": list(self.mean),
            "std": list(self.std),
            "source": self.source,
        }


Loader = Callable[[Path | None], Dataset]
DATASETS: Registry[Loader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register a loader ``fn(root) -> Dataset`` under ``name``."""
    return DATASETS.register(name)


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """Load a registered dataset.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets` (``digits``, ``fashion-mnist``, ``mnist``, ``cifar10``,
        ``svhn``, ``image-folder``).
    root : path, optional
        Folder holding the dataset's files; each loader documents its default.

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered.
    DatasetError
        If files are missing (the message names them and says how to get them) or malformed.
    """
    return DATASETS.get(name)(Path(root) if root is not None else None)


def list_datasets() -> list[str]:
    return DATASETS.names()
