"""CIFAR-10 from the official "python version" batches, unpickled without running code.

The batches are pickles, and unpickling can call any importable function. They hold only dicts,
lists, strings and numpy arrays, so :class:`_BatchUnpickler` resolves just the few numpy
globals needed to rebuild an array and refuses every other one: a crafted file is rejected
before anything in it runs.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import DatasetError
from ._base import Dataset, register_dataset
from ._files import FileLayout

_ARRAY = np.zeros(1, dtype=np.uint8)


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``codecs.encode`` restricted to text-to-bytes latin-1, the one use a CIFAR batch makes of it."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with {encoding!r}: CIFAR batches only use latin1")
    return codecs.encode(text, "latin1")
#: The globals a pickled uint8 array needs. Taken from numpy itself rather than imported by
#: name, because numpy 2 moved them (``numpy.core`` -> ``numpy._core``) and files carry either.
_RECONSTRUCT = _ARRAY.__reduce__()[0]
_FROMBUFFER = _ARRAY.__reduce_ex__(5)[0]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,  # protocol 5 (out-of-band buffers)
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 writes ``bytes`` at protocol <= 2 as ``_codecs.encode(text, "latin1")``; only that codec is allowed.
    ("_codecs", "encode"): lambda text, encoding="utf-8": _latin1_bytes(text, encoding),
}

CIFAR10 = FileLayout(
    name="cifar10",
    title="CIFAR-10",
    files=tuple((f,) for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")),
    obtain="download the 'CIFAR-10 python version' archive from Alex Krizhevsky's CIFAR page "
    "(University of Toronto) and unpack it; it unpacks to a folder cifar-10-batches-py.",
    input_shape=(3, 32, 32),
    n_classes=10,
    subdirs=("cifar-10-batches-py",),
)


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and nothing else callable."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def safe_unpickle(path: Path) -> Any:
    """Unpickle a CIFAR batch, refusing any global a batch does not need.

    Raises
    ------
    DatasetError
        If the file asks for a disallowed global (nothing in it is executed) or is corrupt.
    """
    try:
        with open(path, "rb") as fh:
            # latin1 maps the Python 2 byte strings of the official files one-to-one.
            return _BatchUnpickler(fh, encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise DatasetError(
            f"Refused to load {path}: it asks to call {exc}, which a CIFAR-10 batch never needs "
            "(only dicts, lists and numpy arrays). The file is not a genuine batch and may be "
            "malicious; nothing in it was run."
        ) from None
    except OSError as exc:
        raise DatasetError(f"Cannot read {path}: {exc}.") from exc
    except Exception as exc:  # a corrupt pickle can fail with almost any exception type
        raise DatasetError(
            f"{path} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); unpack the "
            "archive again."
        ) from exc


def _text(value: object) -> object:
    """Batches written by Python 3 keep byte-string keys; the official ones decode to str."""
    return value.decode("latin1") if isinstance(value, bytes) else value


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_unpickle(path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path} holds a {type(batch).__name__}; a CIFAR-10 batch is a dict.")
    batch = {_text(k): v for k, v in batch.items()}
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise DatasetError(f"{path} lacks the key(s) {', '.join(missing)} of a CIFAR-10 batch.")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DatasetError(
            f"{path}: 'data' is {type(data).__name__} {getattr(data, 'dtype', '')} of shape {shape}; "
            "expected a uint8 array of shape (N, 3072) (3 x 32 x 32 per image)."
        )
    if len(data) == 0:
        raise DatasetError(f"{path} holds no images ('data' has shape {data.shape}); unpack the archive again.")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: 'labels' is not a list of integers ({exc}).") from exc
    if labels.shape != (len(data),):
        raise DatasetError(
            f"{path} has {len(data)} images but {labels.size} labels (shape {labels.shape})."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        raise DatasetError(f"{path} has labels outside 0..9 (min {labels.min()}, max {labels.max()}).")
    return data.reshape(-1, 3, 32, 32), labels


def _read_class_names(path: Path) -> tuple[str, ...]:
    meta = safe_unpickle(path)
    names = meta.get("label_names", meta.get(b"label_names")) if isinstance(meta, dict) else None
    if not isinstance(names, (list, tuple)) or len(names) != 10:
        raise DatasetError(f"{path} does not hold the 10 'label_names' of CIFAR-10.")
    return tuple(str(_text(n)) for n in names)


@register_dataset("cifar10", locate=CIFAR10.locate)
def load_cifar10(root: Path | None = None) -> Dataset:
    """CIFAR-10: 50,000 + 10,000 colour 32x32 images of 10 classes.

    ``root`` is the unpacked ``cifar-10-batches-py`` folder (or the folder holding it), with
    ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``. Default:
    ``$NETINVERT_DATA/cifar10``. The pickled batches are read by a restricted unpickler that
    refuses anything but numpy arrays, so a malicious file cannot run code.
    """
    folder, paths = CIFAR10.find(root)
    *train_paths, test_path, meta_path = paths
    class_names = _read_class_names(meta_path)
    train = [_read_batch(p) for p in train_paths]
    xte, yte = _read_batch(test_path)
    xtr = np.concatenate([x for x, _ in train])
    ytr = np.concatenate([y for _, y in train])

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        out = x.astype(np.float32)
        out /= 255.0
        return torch.from_numpy(out)

    return Dataset(
        "cifar10", to_tensor(xtr), torch.from_numpy(ytr), to_tensor(xte), torch.from_numpy(yte),
        class_names=class_names, source=f"CIFAR-10 python batches in {folder}",
    )
