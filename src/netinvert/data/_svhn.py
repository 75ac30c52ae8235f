"""SVHN (Street View House Numbers), cropped 32x32 digits from the official ``.mat`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..exceptions import DatasetError
from ._base import Dataset, register_dataset
from ._files import FileLayout

SVHN = FileLayout(
    name="svhn",
    title="SVHN",
    files=(("train_32x32.mat",), ("test_32x32.mat",)),
    obtain="download train_32x32.mat and test_32x32.mat (the 'Format 2: cropped digits' files) "
    "from the Street View House Numbers page at Stanford.",
    input_shape=(3, 32, 32),
    n_classes=10,
    subdirs=("svhn",),
)


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (32, 32, 3, N) uint8 -> (N, 3, 32, 32); ``y`` in 1..10 -> digit (10 means 0)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except Exception as exc:  # scipy raises many types on a corrupt file (ValueError, MatReadError, ...)
        raise DatasetError(
            f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc}); download it again."
        ) from exc
    missing = [k for k in ("X", "y") if k not in mat]
    if missing:
        raise DatasetError(f"{path} lacks the variable(s) {', '.join(missing)} of an SVHN file.")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetError(
            f"{path}: X is {x.dtype} of shape {x.shape}; expected uint8 of shape (32, 32, 3, N)."
        )
    n = x.shape[3]
    if y.size != n or y.ndim > 2 or not np.issubdtype(y.dtype, np.number):
        raise DatasetError(f"{path} has {n} images but y is {y.dtype} of shape {y.shape}; expected (N, 1).")
    if n == 0:
        raise DatasetError(f"{path} holds no images (X has shape {x.shape}); download it again.")
    y = y.reshape(-1)
    if n and (y.min() < 1 or y.max() > 10 or not np.all(y == np.round(y))):
        raise DatasetError(f"{path}: labels must be integers 1..10 (10 stands for digit 0).")
    return x.transpose(3, 2, 0, 1), (y.astype(np.int64) % 10)


@register_dataset("svhn", locate=SVHN.locate)
def load_svhn(root: Path | None = None) -> Dataset:
    """SVHN cropped digits: 73,257 + 26,032 colour 32x32 images; class ``i`` is digit ``i``.

    ``root`` is a folder holding ``train_32x32.mat`` and ``test_32x32.mat`` (or its ``svhn``
    sub-folder). Default: ``$NETINVERT_DATA/svhn``. In the files, label 10 marks the digit 0.
    """
    folder, (train_path, test_path) = SVHN.find(root)
    tensors = []
    for path in (train_path, test_path):
        x, y = _read_mat(path)
        xf = x.astype(np.float32, order="C")  # contiguous: callers may .view() it
        xf /= 255.0
        tensors += [torch.from_numpy(xf), torch.from_numpy(y)]
    return Dataset(
        "svhn", *tensors, class_names=tuple(str(i) for i in range(10)),
        source=f"SVHN .mat files in {folder}",
    )
