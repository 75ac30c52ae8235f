"""MNIST and Fashion-MNIST loaders on small IDX files written in the real format."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from netinvert.data import dataset_status, load_dataset, read_idx
from netinvert.exceptions import DatasetError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_mnist_round_trips_exact_pixels_and_labels(tmp_path, write_mnist_folder, mnist_arrays, gz):
    folder = write_mnist_folder(tmp_path / "m", gz=gz)
    data = load_dataset("mnist", folder)
    xtr, ytr, xte, yte = mnist_arrays

    assert data.name == "mnist"
    assert data.x_train.shape == (20, 1, 28, 28) and data.x_test.shape == (10, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert torch.equal((data.x_train[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(xtr))
    assert torch.equal((data.x_test[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(xte))
    assert data.y_train.tolist() == ytr.tolist() and data.y_test.tolist() == yte.tolist()
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    assert data.class_names == tuple("0123456789")
    assert str(folder) in data.source


def test_fashion_mnist_reads_a_named_folder_with_its_class_names(tmp_path, write_mnist_folder):
    folder = write_mnist_folder(tmp_path / "fm", gz=True)
    data = load_dataset("fashion-mnist", folder)
    assert data.name == "fashion-mnist"
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert len(data.x_train) == 20


def test_netinvert_data_env_is_searched_before_the_system_folder(tmp_path, write_mnist_folder, monkeypatch):
    write_mnist_folder(tmp_path / "fashion-mnist")
    monkeypatch.setenv("NETINVERT_DATA", str(tmp_path))
    status = dataset_status("fashion-mnist")
    assert status.available and status.where == str(tmp_path / "fashion-mnist")
    assert load_dataset("fashion-mnist").source.endswith(str(tmp_path / "fashion-mnist"))


def test_parent_folder_with_torchvision_layout_is_found(tmp_path, write_mnist_folder):
    write_mnist_folder(tmp_path / "MNIST" / "raw")
    assert dataset_status("mnist", tmp_path).where == str(tmp_path / "MNIST" / "raw")
    assert len(load_dataset("mnist", tmp_path).x_test) == 10


def test_missing_files_are_named_with_the_folder_and_how_to_get_them(tmp_path, write_mnist_folder):
    folder = write_mnist_folder(tmp_path / "m")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", folder)
    msg = str(err.value)
    for name in FILES:
        assert f"{name}[.gz]" in msg
    assert f"{folder} (missing t10k-labels-idx1-ubyte[.gz])" in msg
    assert "To obtain them" in msg and "--data-root" in msg

    status = dataset_status("mnist", folder)
    assert not status.available and "t10k-labels-idx1-ubyte" in status.hint


def test_missing_fashion_mnist_suggests_the_debian_package(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path / "nothing-here")


def test_bad_magic_is_reported(tmp_path, write_mnist_folder):
    folder = write_mnist_folder(tmp_path / "m")
    path = folder / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[:4] = b"\x1f\x8b\x08\x00"  # e.g. a gzip file saved without its .gz suffix
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"not an IDX file: its magic number is 1f 8b 08 00"):
        load_dataset("mnist", folder)


@pytest.mark.parametrize("cut", [3, 10, 100])
def test_truncated_file_is_reported(tmp_path, write_mnist_folder, cut):
    folder = write_mnist_folder(tmp_path / "m")
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-cut] if cut == 100 else path.read_bytes()[:cut])
    with pytest.raises(DatasetError, match="truncated|not an IDX file") as err:
        load_dataset("mnist", folder)
    assert str(path) in str(err.value)


def test_trailing_bytes_are_reported(tmp_path, write_mnist_folder):
    folder = write_mnist_folder(tmp_path / "m")
    path = folder / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DatasetError, match="has trailing bytes"):
        load_dataset("mnist", folder)


def test_image_label_count_mismatch_is_reported(tmp_path, write_mnist_folder, write_idx):
    folder = write_mnist_folder(tmp_path / "m")
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(19, dtype=np.uint8))
    with pytest.raises(DatasetError, match="has 20 images but .* has 19 labels"):
        load_dataset("mnist", folder)


def test_swapped_images_and_labels_give_a_shape_error(tmp_path, write_mnist_folder, mnist_arrays, write_idx):
    folder = write_mnist_folder(tmp_path / "m")
    write_idx(folder / "train-images-idx3-ubyte", mnist_arrays[1])
    with pytest.raises(DatasetError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load_dataset("mnist", folder)


def test_wrong_dtype_and_label_range_are_reported(tmp_path, write_mnist_folder, write_idx):
    folder = write_mnist_folder(tmp_path / "m")
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(10, dtype=">i4"))
    with pytest.raises(DatasetError, match="int32 values .* expected uint8 labels"):
        load_dataset("mnist", folder)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.full(10, 12, dtype=np.uint8))
    with pytest.raises(DatasetError, match="has label 12; expected labels 0..9"):
        load_dataset("mnist", folder)


def test_corrupt_gzip_is_reported(tmp_path, write_mnist_folder):
    folder = write_mnist_folder(tmp_path / "m", gz=True)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])  # cut mid-stream
    with pytest.raises(DatasetError, match="not a complete gzip file"):
        load_dataset("mnist", folder)
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(DatasetError, match="not a complete gzip file"):
        load_dataset("mnist", folder)


def test_read_idx_handles_other_idx_types(tmp_path, write_idx):
    values = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    out = read_idx(write_idx(tmp_path / "f.idx.gz", values))
    assert out.shape == (3, 4) and np.array_equal(out, values)
    raw = gzip.decompress((tmp_path / "f.idx.gz").read_bytes())
    assert raw[:4] == b"\x00\x00\x0d\x02"


def test_kmnist_reads_its_idx_files_and_is_an_ood_set(tmp_path, write_mnist_folder, mnist_arrays):
    from netinvert.apps.ood import load_ood_set

    folder = write_mnist_folder(tmp_path / "k", gz=True)
    data = load_dataset("kmnist", folder)
    xtr, _, _, yte = mnist_arrays
    assert data.name == "kmnist" and data.class_names[:3] == ("o", "ki", "su")
    assert torch.equal((data.x_train[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(xtr))
    assert data.y_test.tolist() == yte.tolist()
    x = load_ood_set("kmnist", (1, 8, 8), root=folder)  # converted for a digits model
    assert x.shape == (10, 1, 8, 8)
