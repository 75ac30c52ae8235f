"""The real data: scikit-learn's embedded digits, and Fashion-MNIST where Debian's package is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netinvert.data import dataset_status, load_dataset

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_digits_shape_range_and_fixed_stratified_split():
    data = load_dataset("digits")
    assert data.x_train.shape == (1437, 1, 8, 8) and data.x_test.shape == (360, 1, 8, 8)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    assert data.n_classes == 10 and data.input_shape == (1, 8, 8)

    again = load_dataset("digits")
    assert torch.equal(data.x_test, again.x_test) and torch.equal(data.y_test, again.y_test)

    # stratified: each class's share of the test split is within one image of 20%
    total = np.bincount(torch.cat([data.y_train, data.y_test]).numpy(), minlength=10)
    test = np.bincount(data.y_test.numpy(), minlength=10)
    assert np.all(np.abs(test - 0.2 * total) <= 1)


@pytest.mark.skipif(
    not (DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed here (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_from_the_debian_package():
    data = load_dataset("fashion-mnist", DEBIAN_FASHION)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert data.n_classes == 10 and data.class_names[0] == "T-shirt/top"
    assert 0.0 <= float(data.x_test.min()) and float(data.x_test.max()) <= 1.0
    assert np.bincount(data.y_train.numpy(), minlength=10).tolist() == [6000] * 10
    assert np.bincount(data.y_test.numpy(), minlength=10).tolist() == [1000] * 10
    # the published statistics of the training images
    assert data.mean[0] == pytest.approx(0.2860, abs=1e-3) and data.std[0] == pytest.approx(0.3530, abs=1e-3)
    status = dataset_status("fashion-mnist")
    assert status.available and status.where == str(DEBIAN_FASHION)
