"""Tiny BNNs whose every input can be enumerated, and one small BNN trained on digits."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from bnn_helpers import all_inputs, random_bnn
from netinvert.bnn import BNN, BNNTrainConfig, InputBinarizer, export_bnn, train_bnn


@pytest.fixture(scope="session")
def tiny() -> tuple[BNN, np.ndarray, np.ndarray]:
    """(model, every input, PyTorch label of each) for a 10-input, two-hidden-layer BNN."""
    model = random_bnn(10, (6, 5), 4, seed=3)
    x = all_inputs(10)
    return model, x, model.predict(torch.as_tensor(x)).numpy()


@pytest.fixture(scope="session")
def tiny_ternary() -> tuple[BNN, np.ndarray, np.ndarray]:
    model = random_bnn(9, (5,), 3, seed=5, ternary=True)
    x = all_inputs(9)
    return model, x, model.predict(torch.as_tensor(x)).numpy()


@pytest.fixture(scope="session")
def digits_bnn(digits):
    """(model, test bits, test labels) of a 64-32-10 BNN trained briefly on binarised digits."""
    binarizer = InputBinarizer(threshold=0.5)
    model = BNN(64, (32,), 10)
    train_bnn(model, binarizer(digits.x_train), digits.y_train, BNNTrainConfig(epochs=5, seed=0))
    return model, binarizer(digits.x_test).numpy().astype(np.int8), digits.y_test.numpy()


@pytest.fixture(scope="session")
def digits_net(digits_bnn):
    return export_bnn(digits_bnn[0])


@pytest.fixture(scope="session")
def digits_bnn_run(tmp_path_factory):
    """A BNN run folder (digits, 64-8-10, 3 epochs) written by run_bnn_training; only read by tests.
    Ganak does not count a label of it in a minute, so it also serves as "a count that does not finish"."""
    from netinvert.bnn import BNNRunConfig, run_bnn_training

    out = tmp_path_factory.mktemp("bnn_run") / "run"
    run_bnn_training(BNNRunConfig(dataset="digits", hidden=(8,), epochs=3, threads=1), out, progress=False)
    return out
