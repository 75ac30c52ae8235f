"""SVHN loader on small .mat files written as the official ones (X: 32x32x3xN, y: Nx1, 10 = digit 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat

from netinvert.data import dataset_status, load_dataset
from netinvert.exceptions import DatasetError


def write_svhn(folder, n_train=12, n_test=7, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n, dtype=np.uint8) % 10 + 1).reshape(n, 1)  # 1..10, as in the files
        savemat(folder / name, {"X": x, "y": y})
        out[name] = (x, y)
    return out


def test_svhn_round_trips_exact_pixels_and_maps_label_10_to_0(tmp_path):
    arrays = write_svhn(tmp_path)
    data = load_dataset("svhn", tmp_path)
    x, y = arrays["test_32x32.mat"]

    assert data.x_train.shape == (12, 3, 32, 32) and data.x_test.shape == (7, 3, 32, 32)
    assert data.x_test.is_contiguous() and data.y_test.dtype == torch.int64
    want = torch.from_numpy(x.transpose(3, 2, 0, 1).copy())
    assert torch.equal((data.x_test * 255).round().to(torch.uint8), want)
    # pixel (row 5, col 9, green) of image 3
    assert float(data.x_test[3, 1, 5, 9]) == pytest.approx(x[5, 9, 1, 3] / 255)
    assert data.y_test.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert data.y_train.tolist()[8:12] == [9, 0, 1, 2]  # file label 10 is digit 0
    assert data.class_names == tuple("0123456789")


def test_missing_svhn_files_are_named(tmp_path):
    write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DatasetError, match=r"missing test_32x32\.mat\).*Street View House Numbers"):
        load_dataset("svhn", tmp_path)
    assert not dataset_status("svhn", tmp_path).available


def test_unreadable_mat_is_reported(tmp_path):
    write_svhn(tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, but then garbage" * 3)
    with pytest.raises(DatasetError, match="not a readable MATLAB file"):
        load_dataset("svhn", tmp_path)


@pytest.mark.parametrize(
    ("contents", "match"),
    [
        ({"X": np.zeros((32, 32, 3, 4), np.uint8)}, "lacks the variable"),
        ({"X": np.zeros((3, 32, 32, 4), np.uint8), "y": np.ones((4, 1))}, r"expected uint8 of shape \(32, 32, 3, N\)"),
        ({"X": np.zeros((32, 32, 3, 4), np.float32), "y": np.ones((4, 1))}, "expected uint8"),
        ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.ones((3, 1))}, "has 4 images but y"),
        ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[1], [2], [0], [3]])}, "labels must be integers 1..10"),
        ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[1], [2], [11], [3]])}, "labels must be integers 1..10"),
    ],
)
def test_malformed_svhn_contents_are_reported(tmp_path, contents, match):
    write_svhn(tmp_path)
    savemat(tmp_path / "train_32x32.mat", contents)
    with pytest.raises(DatasetError, match=match) as err:
        load_dataset("svhn", tmp_path)
    assert "train_32x32.mat" in str(err.value)


def test_empty_test_file_is_refused_by_name(tmp_path):
    write_svhn(tmp_path, n_test=0)
    with pytest.raises(DatasetError, match=r"test_32x32\.mat holds no images \(X has shape \(32, 32, 3, 0\)\)"):
        load_dataset("svhn", tmp_path)
