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


#: (inputs, hidden widths, classes) of the random two-hidden-layer nets
SHAPES = [(12, (9, 7), 5), (14, (12, 6), 4), (11, (10, 10), 6), (13, (8, 3), 3)]


def _listable_radii(net, seed: int, *, skip_certified: bool = False):
    """``(x, k, bounds, free1, label-changing patterns)`` for every radius of three seeded inputs whose free
    first-layer neurons are few enough (<= 14) to list every pattern by a forward pass."""
    rng = np.random.default_rng(seed)
    for _ in range(3):
        x = rng.integers(0, 2, net.n_inputs)
        for k in range(1, net.n_inputs + 1):
            fb = flip_bounds(net, x, k)
            free1 = np.flatnonzero(~fb.fixed[0])
            if len(free1) > 14 or (skip_certified and fb.certified):
                continue
            yield x, k, fb, free1, label_changing_patterns(net, fb, free1)


@pytest.mark.parametrize("seed", range(8))
def test_fast_path_matches_general_path_and_forward_pass(seed, monkeypatch):
    """Random two-hidden-layer nets (dense and ternary), every radius, both neuron orders, and a tiny
    chunk so that the chunked evaluation is exercised."""
    monkeypatch.setattr(_robust, "_bad_patterns_2", functools.partial(_robust._bad_patterns_2, chunk=3))
    net = export_bnn(random_bnn(*SHAPES[seed % 4], seed=300 + seed, ternary=seed % 2 == 1))
    nonempty = 0
    for x, k, fb, free1, want in _listable_radii(net, seed):
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


@pytest.mark.parametrize("seed", range(3))
def test_dive_returns_label_changing_patterns_only_and_all_of_them_with_a_wide_beam(seed):
    """The dive (``beam``) is a witness finder: every code it returns changes the label; with a beam wider
    than any level it is the full search; and it is refused where the fast path does not apply."""
    net = export_bnn(random_bnn(*SHAPES[seed], seed=400 + seed, ternary=seed % 2 == 1))
    narrowed = 0
    for x, k, fb, free1, want in _listable_radii(net, seed, skip_certified=True):
        need1 = _moves(net, x, fb, free1)[0]
        assert np.array_equal(_bad_patterns(net, fb, free1, need1=need1, beam=1 << 15), want)
        for beam in (1, 2, 4):
            got = _bad_patterns(net, fb, free1, need1=need1, beam=beam)
            assert np.isin(got, want).all(), (seed, k, beam)
            narrowed += len(got) < len(want)
        with pytest.raises(ValueError, match="two hidden layers and the fast path"):
            _bad_patterns(net, fb, free1, need1=need1, beam=4, fast=False)
    assert narrowed > 0  # a narrow beam did leave patterns out


@pytest.mark.parametrize("seed", range(6))
def test_pattern_search_with_and_without_the_dive_agree_with_brute_force(seed, monkeypatch):
    """A dive that finds a witness ends the search; one that does not leaves it to the full search: both
    decide every radius as listing every flip set does (a beam of 2 leaves most witnesses to the full search)."""
    net = export_bnn(random_bnn(*SHAPES[seed % 3], seed=500 + seed, ternary=seed % 2 == 1))
    from netinvert.bnn import _pattern_sat

    last_beam, dive_wins = [None], []
    bad, realise = _robust._bad_patterns, _pattern_sat.realise_patterns

    def spy_bad(*args, **kwargs):
        last_beam[0] = kwargs.get("beam")
        return bad(*args, **kwargs)

    def spy_realise(*args, **kwargs):
        out = realise(*args, **kwargs)
        if last_beam[0] is not None and out.indices is not None:
            dive_wins.append(1)
        return out

    monkeypatch.setattr(_robust, "_bad_patterns", spy_bad)
    monkeypatch.setattr(_pattern_sat, "realise_patterns", spy_realise)
    rng = np.random.default_rng(seed)
    for _ in range(2):
        x = rng.integers(0, 2, net.n_inputs)
        truth = None
        for k in range(1, net.n_inputs + 1):
            if truth is None and _robust.exhaustive_flip_search(net, x, k)[0] is not None:
                truth = k
            for dive in (None, 2):
                before = len(dive_wins)
                ps = _robust.pattern_flip_search(net, x, k, dive=dive, max_states=1 << 20)
                assert ps.complete, (seed, k, dive)
                assert ps.by_dive == (len(dive_wins) > before)  # the result says where its witness came from
                assert (ps.indices is not None) == (truth is not None), (seed, k, dive, truth)
                if ps.indices is not None:
                    y = x.copy()
                    y[ps.indices] ^= 1
                    assert len(ps.indices) <= k and net.predict(y[None])[0] != net.predict(x[None])[0]
    assert dive_wins  # some witnesses came from the dive
    with pytest.raises(ValueError, match="'dive' parameter of pattern_flip_search must be an int >= 1"):
        _robust.pattern_flip_search(net, x, 1, dive=0)
