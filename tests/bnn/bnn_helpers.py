"""Helpers shared by the BNN tests (a plain module: importing from conftest is ambiguous when
several test folders have one)."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from netinvert.bnn import BNN


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


def label_changing_patterns(net, fb, free1: np.ndarray) -> np.ndarray:
    """Brute force: the change patterns (bit i of a code flips free first-layer neuron ``free1[i]``) that change the
    label of the net whose neurons ``fb`` (``flip_bounds``) fixes, by a forward pass over every pattern."""
    codes = np.arange(1 << len(free1))
    v = np.repeat(fb.values[0][None], len(codes), 0)
    v[:, free1] ^= (codes[:, None] >> np.arange(len(free1))[None, :]) & 1
    for (lits, bounds), values, fixed in zip(net.layers[1:], fb.values[1:], fb.fixed[1:]):
        count = np.where(lits[None] == 1, v[:, None, :] == 1, np.where(lits[None] == -1, v[:, None, :] == 0, False)).sum(2)
        v = np.where(fixed[None, :], values[None, :], count >= bounds[None, :]).astype(np.int64)
    return codes[((2 * v - 1) @ net.head.astype(np.int64).T).argmax(1) != fb.label]
