"""MNIST-style IDX files, and the ``fashion-mnist``, ``mnist`` and ``kmnist`` datasets read from them.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the values in C order. Every size is checked against the header before numpy
sees the bytes, so a truncated or mislabelled file is reported by name instead of failing
somewhere inside a reshape.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch

from ..exceptions import DatasetError
from ._base import Dataset, register_dataset
from ._files import FileLayout, read_bytes

#: IDX type byte -> numpy dtype (values are big-endian).
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

#: Where Debian's ``dataset-fashion-mnist`` package installs the four gzipped IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw, or gzipped when its name ends in ``.gz``).

    Parameters
    ----------
    path : path
        An IDX file such as ``train-images-idx3-ubyte.gz``.

    Returns
    -------
    numpy.ndarray
        Shaped as the header says, in the header's dtype (``uint8`` for MNIST-style files).

    Raises
    ------
    DatasetError
        If the magic number is wrong, or the file is shorter or longer than its header says.
    """
    path = Path(path)
    raw = read_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DatasetError(
            f"{path} is not an IDX file: its magic number is {raw[:4].hex(' ') or '(empty)'}, "
            "expected 00 00 <type 08|09|0b|0c|0d|0e> <ndim >= 1> (e.g. 00 00 08 03 for images). "
            "Check the file name and that it was downloaded completely."
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated: its header needs {header} bytes, the file has {len(raw)}.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(raw) != expected:
        problem = "is truncated" if len(raw) < expected else "has trailing bytes"
        raise DatasetError(
            f"{path} {problem}: its header declares shape {dims} ({expected} bytes in all), "
            f"the file has {len(raw)} bytes. Download it again."
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)


def _idx_layout(name: str, title: str, obtain: str, subdirs: tuple[str, ...],
                system_dirs: tuple[Path, ...] = ()) -> FileLayout:
    """The four MNIST-style files (raw preferred over gzipped when both exist)."""
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return FileLayout(
        name=name, title=title, files=tuple((s, s + ".gz") for s in stems), obtain=obtain,
        input_shape=(1, 28, 28), n_classes=10, subdirs=subdirs, system_dirs=system_dirs,
    )


FASHION_MNIST = _idx_layout(
    "fashion-mnist", "Fashion-MNIST",
    "on Debian or Ubuntu run 'apt-get install dataset-fashion-mnist' (installs them in "
    f"{DEBIAN_FASHION_MNIST}, found automatically), or download the four IDX files that Zalando "
    "Research publishes in the Fashion-MNIST repository (gzipped or not).",
    subdirs=("fashion-mnist", "FashionMNIST/raw"),
    system_dirs=(DEBIAN_FASHION_MNIST,),
)

MNIST = _idx_layout(
    "mnist", "MNIST",
    "download the four IDX files (training and test images and labels, gzipped or not) from "
    "the MNIST database page of LeCun, Cortes and Burges, or a mirror of it.",
    subdirs=("mnist", "MNIST/raw"),
)


KMNIST = _idx_layout(
    "kmnist", "Kuzushiji-MNIST",
    "download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) that the ROIS-DS Center for Open Data in the Humanities publishes for Kuzushiji-MNIST.",
    subdirs=("kmnist", "KMNIST/raw"),
)
#: Kuzushiji-MNIST's ten cursive hiragana, romanised.
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")


def _check_split(images: np.ndarray, labels: np.ndarray, img_path: Path, lbl_path: Path,
                 n_classes: int) -> None:
    """Shapes, dtypes, counts and label range of one split, each reported against its file."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{img_path} holds {images.dtype.name} values of shape {images.shape}; expected uint8 "
            "images of shape (N, 28, 28). Is this an images file (idx3-ubyte)?"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(
            f"{lbl_path} holds {labels.dtype.name} values of shape {labels.shape}; expected uint8 "
            "labels of shape (N,). Is this a labels file (idx1-ubyte)?"
        )
    if len(images) == 0:
        raise DatasetError(
            f"{img_path} holds no images: its header declares shape {images.shape}. A split needs at least one "
            "image; download the file again or pass the folder of a complete set."
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels; "
            "the files belong to different sets or one is incomplete."
        )
    if len(labels) and labels.max() >= n_classes:
        raise DatasetError(f"{lbl_path} has label {int(labels.max())}; expected labels 0..{n_classes - 1}.")


def _load_idx_dataset(layout: FileLayout, root: Path | None, class_names: tuple[str, ...]) -> Dataset:
    folder, (xtr_p, ytr_p, xte_p, yte_p) = layout.find(root)
    splits = []
    for img_p, lbl_p in ((xtr_p, ytr_p), (xte_p, yte_p)):
        images, labels = read_idx(img_p), read_idx(lbl_p)
        _check_split(images, labels, img_p, lbl_p, len(class_names))
        x = images.astype(np.float32)[:, None]
        x /= 255.0
        splits += [torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))]
    return Dataset(layout.name, *splits, class_names=class_names, source=f"IDX files in {folder}")


@register_dataset("fashion-mnist", locate=FASHION_MNIST.locate)
def load_fashion_mnist(root: Path | None = None) -> Dataset:
    """Zalando's Fashion-MNIST: 60,000 + 10,000 grey 28x28 images of 10 kinds of clothing.

    ``root`` is a folder holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
    ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]`` (or its ``fashion-mnist`` /
    ``FashionMNIST/raw`` sub-folder). Default: ``$NETINVERT_DATA/fashion-mnist``, then the folder
    of Debian's ``dataset-fashion-mnist`` package.
    """
    return _load_idx_dataset(FASHION_MNIST, root, FASHION_MNIST_CLASSES)


@register_dataset("mnist", locate=MNIST.locate)
def load_mnist(root: Path | None = None) -> Dataset:
    """The MNIST handwritten digits: 60,000 + 10,000 grey 28x28 images.

    ``root`` is a folder holding the four IDX files named as for Fashion-MNIST (or its ``mnist``
    / ``MNIST/raw`` sub-folder). Default: ``$NETINVERT_DATA/mnist``.
    """
    return _load_idx_dataset(MNIST, root, tuple(str(i) for i in range(10)))


@register_dataset("kmnist", locate=KMNIST.locate)
def load_kmnist(root: Path | None = None) -> Dataset:
    """Kuzushiji-MNIST (Clanuwat et al. 2018): 60,000 + 10,000 grey 28x28 cursive Japanese characters.

    ``root`` is a folder holding the four IDX files named as for MNIST (or its ``kmnist`` /
    ``KMNIST/raw`` sub-folder). Default: ``$NETINVERT_DATA/kmnist``. A far-OOD set for MNIST-like models.
    """
    return _load_idx_dataset(KMNIST, root, KMNIST_CLASSES)
