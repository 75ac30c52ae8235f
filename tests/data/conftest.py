"""Writers for dataset files in their real on-disk formats, shared by the loader tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

#: IDX type byte of each numpy dtype the tests write.
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: 00 00 <type> <ndim>, big-endian uint32 dims, then the values."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, _IDX_CODES[dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


@pytest.fixture
def write_idx():
    """``write_idx(path, array)`` writes an IDX file, gzipped when ``path`` ends in ``.gz``."""

    def write(path: Path, array: np.ndarray) -> Path:
        data = idx_bytes(array)
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
        return path

    return write


@pytest.fixture
def mnist_arrays():
    """Small MNIST-shaped splits: (x_train, y_train, x_test, y_test) as uint8, every label present."""
    rng = np.random.default_rng(1)
    xtr = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    xte = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    ytr = np.arange(20, dtype=np.uint8) % 10
    yte = rng.permutation(10).astype(np.uint8)
    return xtr, ytr, xte, yte


@pytest.fixture
def write_mnist_folder(write_idx, mnist_arrays):
    """``write_mnist_folder(folder, gz=...)`` writes the four IDX files and returns the folder."""

    def write(folder: Path, gz: bool = False) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        ext = ".gz" if gz else ""
        xtr, ytr, xte, yte = mnist_arrays
        write_idx(folder / f"train-images-idx3-ubyte{ext}", xtr)
        write_idx(folder / f"train-labels-idx1-ubyte{ext}", ytr)
        write_idx(folder / f"t10k-images-idx3-ubyte{ext}", xte)
        write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", yte)
        return folder

    return write


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    """Tests choose their folders explicitly; a developer's $NETINVERT_DATA must not leak in."""
    monkeypatch.delenv("NETINVERT_DATA", raising=False)
