"""Tiny BNNs whose every input can be enumerated, and one small BNN trained on digits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from netinvert.bnn import BNN, BNNTrainConfig, InputBinarizer, export_bnn, train_bnn


def random_bnn(n_inputs: int, hidden: tuple[int, ...], n_classes: int, seed: int, ternary: bool = False) -> BNN:
    """A BNN with random weights and random batch norm, including negative and zero scales."""
    g = torch.Generator().manual_seed(seed)
    model = BNN(n_inputs, hidden, n_classes, ternary_delta=0.3 if ternary else None)
    with torch.no_grad():
        for lin in (*model.linears, model.head):
            lin.weight.copy_(torch.rand(lin.weight.shape, generator=g) * 2 - 1)
        for bn in model.norms:
            h = bn.num_features
            bn.running_mean.copy_(torch.randn(h, generator=g) * 2)
            bn.running_var.copy_(torch.rand(h, generator=g) * 3 + 0.2)
            gamma = torch.randn(h, generator=g)
            gamma[0] = -abs(gamma[0])  # a negative scale flips the inequality
            gamma[-1] = 0.0  # a zero scale makes a constant neuron
            bn.weight.copy_(gamma)
            bn.bias.copy_(torch.randn(h, generator=g) * 0.5)
    return model.eval()


def all_inputs(n: int) -> np.ndarray:
    return np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int8)


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
