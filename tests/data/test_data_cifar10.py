"""CIFAR-10 loader on small batches pickled in the real layout, and its refusal of unsafe pickles."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch

from netinvert.data import load_dataset
from netinvert.exceptions import DatasetError

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


_RECONSTRUCT = np.zeros(1).__reduce__()[0]


class _Python2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the official archive: byte strings as ``str``
    opcodes (read back as text under latin1) and numpy's pre-2.0 ``numpy.core`` module path."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def _dump(obj, fh, protocol):
    if protocol == "py2":
        _Python2Pickler(fh, protocol=2).dump(obj)
    else:
        pickle.dump(obj, fh, protocol=protocol)


def write_cifar(folder, protocol=pickle.DEFAULT_PROTOCOL, n_per_batch=4, n_test=5, seed=0):
    """Five training batches, a test batch and batches.meta, with the official dict keys."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else n_per_batch
        batch = {
            b"batch_label": f"batch {i}".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n)],
        }
        with open(folder / name, "wb") as fh:
            _dump(batch, fh, protocol)
        batches[name] = batch
    meta = {b"num_cases_per_batch": n_per_batch, b"label_names": [s.encode() for s in NAMES], b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as fh:
        _dump(meta, fh, protocol)
    return batches


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
def test_cifar10_round_trips_exact_pixels_and_labels(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar(folder, protocol=protocol)
    data = load_dataset("cifar10", tmp_path)  # the parent of the unpacked folder is accepted too

    train = [batches[f"data_batch_{k}"] for k in range(1, 6)]
    want_x = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)
    want_y = sum((b[b"labels"] for b in train), [])
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (5, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert torch.equal((data.x_train * 255).round().to(torch.uint8), torch.from_numpy(want_x))
    assert data.y_train.tolist() == want_y
    assert data.y_test.tolist() == batches["test_batch"][b"labels"]
    # channel-first rows: the first 1024 bytes of a row are the red plane
    assert float(data.x_test[0, 0, 0, 1]) == pytest.approx(batches["test_batch"][b"data"][0, 1] / 255)
    assert float(data.x_test[0, 2, 31, 31]) == pytest.approx(batches["test_batch"][b"data"][0, 3071] / 255)
    assert data.class_names == tuple(NAMES)


def test_missing_batches_are_named(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    (tmp_path / "batches.meta").unlink()
    with pytest.raises(DatasetError, match=r"missing data_batch_3, batches\.meta\).*CIFAR-10 python version"):
        load_dataset("cifar10", tmp_path)


class _RunsCode:
    """A pickle payload that would create ``marker`` when unpickled by plain ``pickle.load``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("victim", ["data_batch_2", "test_batch", "batches.meta"])
def test_malicious_pickle_is_refused_and_does_not_run(tmp_path, victim):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    key = b"label_names" if victim == "batches.meta" else b"data"
    payload = {b"labels": [0], key: _RunsCode(marker)}
    with open(tmp_path / victim, "wb") as fh:
        pickle.dump(payload, fh, protocol=2)
    with pytest.raises(DatasetError, match=r"Refused to load .*mkdir.*nothing in it was run"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()

    # the same file does run code under a plain unpickler: the test would catch a leaky allow-list
    with open(tmp_path / victim, "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    write_cifar(tmp_path)
    # protocol-0 GLOBAL opcode for builtins.eval, called on a string: the classic exploit
    (tmp_path / "data_batch_1").write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(DatasetError, match=r"Refused .*builtins\.eval"):
        load_dataset("cifar10", tmp_path)


def test_codecs_encode_is_allowed_only_for_latin1(tmp_path):
    write_cifar(tmp_path)
    # any other codec (rot13, zlib, base64...) transforms data in ways no CIFAR batch needs
    (tmp_path / "data_batch_1").write_bytes(b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.")
    with pytest.raises(DatasetError, match="refusing _codecs.encode with 'rot13'"):
        load_dataset("cifar10", tmp_path)


def test_corrupt_and_malformed_batches_are_reported(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "data_batch_1"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DatasetError, match="not a readable CIFAR-10 batch"):
        load_dataset("cifar10", tmp_path)

    def dump(obj):
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)

    dump([1, 2, 3])
    with pytest.raises(DatasetError, match="holds a list; a CIFAR-10 batch is a dict"):
        load_dataset("cifar10", tmp_path)
    dump({b"data": np.zeros((4, 3072), np.uint8)})
    with pytest.raises(DatasetError, match="lacks the key"):
        load_dataset("cifar10", tmp_path)
    dump({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4})
    with pytest.raises(DatasetError, match=r"expected a uint8 array of shape \(N, 3072\)"):
        load_dataset("cifar10", tmp_path)
    dump({b"data": np.zeros((4, 3072), np.float64), b"labels": [0] * 4})
    with pytest.raises(DatasetError, match="expected a uint8 array"):
        load_dataset("cifar10", tmp_path)
    dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3})
    with pytest.raises(DatasetError, match="has 4 images but 3 labels"):
        load_dataset("cifar10", tmp_path)
    dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]})
    with pytest.raises(DatasetError, match="labels outside 0..9"):
        load_dataset("cifar10", tmp_path)


def test_empty_test_batch_is_refused_by_name(tmp_path):
    write_cifar(tmp_path, n_test=0)
    with pytest.raises(DatasetError, match=r"test_batch holds no images \('data' has shape \(0, 3072\)\)"):
        load_dataset("cifar10", tmp_path)
