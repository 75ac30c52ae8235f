"""The two-layer fast path of the label-changing pattern search (``_bad_patterns_2``) checked against
the general path and against a direct forward pass over every change pattern.

Both paths must return exactly the same codes (the same branch and bound with the same bound), give
up (None) at the same ``max_states``, and list exactly the patterns that change the label.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from bnn_helpers import label_changing_patterns, random_bnn
from netinvert.bnn import export_bnn
from netinvert.bnn import _robust
from netinvert.bnn._robust import _bad_patterns, _moves, flip_bounds


@pytest.mark.parametrize("seed", range(8))
def test_fast_path_matches_general_path_and_forward_pass(seed, monkeypatch):
    """Random two-hidden-layer nets (dense and ternary), every radius, both neuron orders, and a tiny
    chunk so that the chunked evaluation is exercised."""
    monkeypatch.setattr(_robust, "_bad_patterns_2", functools.partial(_robust._bad_patterns_2, chunk=3))
    shape = [(12, (9, 7), 5), (14, (12, 6), 4), (11, (10, 10), 6), (13, (8, 3), 3)][seed % 4]
    net = export_bnn(random_bnn(*shape, seed=300 + seed, ternary=seed % 2 == 1))
    rng = np.random.default_rng(seed)
    nonempty = 0
    for _ in range(3):
        x = rng.integers(0, 2, net.n_inputs)
        for k in range(1, net.n_inputs + 1):
            fb = flip_bounds(net, x, k)
            free1 = np.flatnonzero(~fb.fixed[0])
            if len(free1) > 14:
                continue
            want = label_changing_patterns(net, fb, free1)
            nonempty += len(want) > 0
            for need1 in (None, _moves(net, x, fb, free1)[0]):
                fast = _bad_patterns(net, fb, free1, need1=need1)
                slow = _bad_patterns(net, fb, free1, need1=need1, fast=False)
                assert np.array_equal(fast, slow), (seed, k)
                assert np.array_equal(fast, want), (seed, k)
                for cap in (0, 2, 16):  # giving up is the same decision on both paths
                    a = _bad_patterns(net, fb, free1, need1=need1, max_states=cap)
                    b = _bad_patterns(net, fb, free1, need1=need1, max_states=cap, fast=False)
                    assert (a is None) == (b is None) and (a is None or np.array_equal(a, b)), (seed, k, cap)
    assert nonempty > 0
