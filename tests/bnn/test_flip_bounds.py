"""Interval bounds over the Hamming ball and the pattern search, checked against brute force.

Every input of each tiny net is listed, so each claim -- a neuron fixed on the ball, a label
certified, a flip set found or ruled out, a minimal ``k`` -- is compared with the truth.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnn_helpers import all_inputs, label_changing_patterns, random_bnn
from netinvert.bnn import BNN, BNNTrainConfig, SatInverter, SatResult, encode, export_bnn, train_bnn
from netinvert.bnn._robust import exhaustive_flip_search, flip_bounds, pattern_flip_search

#: (inputs, hidden, classes, ternary, seed): one to three hidden layers, dense and ternary weights;
#: seeds picked so that minimal flips range from 1 to 7, one net has a single label (no flip changes
#: it), and some radii are ruled out only by the flip-set search (label-changing patterns exist)
SHAPES = [(8, (6,), 3, False, 46), (10, (8, 5), 4, True, 11), (12, (6, 6, 4), 5, False, 24),
          (12, (6, 6, 4), 5, False, 28), (11, (9, 7), 3, False, 33), (11, (9, 7), 3, False, 45)]


def _trained_bnn() -> BNN:
    """A 12-input BNN trained on a rule it can learn (which half holds more ones, and parity of two bits)."""
    x = torch.as_tensor(all_inputs(12), dtype=torch.float32)
    y = (x[:, :6].sum(1) > x[:, 6:].sum(1)).long() * 2 + (x[:, 0] != x[:, 11]).long()
    model = BNN(12, (10, 8), 4)
    train_bnn(model, x, y, BNNTrainConfig(epochs=15, batch_size=256, lr=1e-2, seed=0))
    return model.eval()


@pytest.fixture(scope="module", params=[*range(len(SHAPES)), "trained"], ids=lambda p: f"random{p}" if p != "trained" else p)
def case(request):
    """(integer net, PyTorch model, every input, hidden values of each, labels, centres to test)."""
    if request.param == "trained":
        model = _trained_bnn()
    else:
        n, h, c, t, seed = SHAPES[request.param]
        model = random_bnn(n, h, c, seed=seed, ternary=t)
    net = export_bnn(model)
    x = all_inputs(net.n_inputs).astype(np.int64)
    rng = np.random.default_rng(len(x))
    return net, model, x, net.hidden(x), net.predict(x), rng.choice(len(x), 8, replace=False)


def test_fixed_neurons_keep_their_value_and_certified_is_never_wrong(case):
    net, _, x, hidden, labels, centres = case
    n_fixed = n_certified = n_changed = 0
    for c in centres:
        dist = (x != x[c]).sum(1)
        for k in range(net.n_inputs + 1):
            fb = flip_bounds(net, x[c], k)
            ball = dist <= k
            assert fb.label == labels[c]
            for layer, h in enumerate(hidden):
                assert (fb.values[layer] == h[c]).all()
                fixed = fb.fixed[layer]
                assert (h[ball][:, fixed] == fb.values[layer][fixed]).all(), (c, k, layer)
                n_fixed += int(fixed.sum())
            changed = (labels[ball] != labels[c]).any()
            assert not (fb.certified and changed), (c, k)
            n_certified += fb.certified
            n_changed += changed
    # the checks above are not vacuous: neurons get fixed, labels certified, and labels change
    assert n_fixed > 0 and n_certified > 0 and (n_changed > 0 or (labels == labels[0]).all())


def test_radius_zero_fixes_everything_and_full_radius_only_constants(case):
    net, _, x, hidden, labels, centres = case
    fb = flip_bounds(net, x[centres[0]], 0)
    assert all(f.all() for f in fb.fixed) and fb.certified
    fb = flip_bounds(net, x[centres[0]], net.n_inputs)
    constant = (hidden[0] == hidden[0][:1]).all(0)
    assert not (fb.fixed[0] & ~constant).any()
    with pytest.raises(ValueError, match="'k' parameter of flip_bounds"):
        flip_bounds(net, x[0], -1)


def test_pattern_search_is_exact(case):
    net, _, x, _, labels, centres = case
    witnesses = proofs = searched = 0
    for c in centres:
        dist = (x != x[c]).sum(1)
        for k in range(1, net.n_inputs + 1):
            ps = pattern_flip_search(net, x[c], k, max_free=net.n_inputs)
            assert ps.complete
            exists = (labels[dist <= k] != labels[c]).any()
            if ps.indices is None:
                assert not exists, (c, k)
                proofs += 1
                searched += ps.n_bad > 0  # ruled out although some free-neuron pattern changes the label
            else:
                y = x[c].copy()
                y[ps.indices] ^= 1
                assert len(set(ps.indices.tolist())) == len(ps.indices) <= k
                assert net.predict(y[None])[0] != labels[c]
                witnesses += 1
    assert proofs > 0 and (witnesses > 0 or (labels == labels[0]).all())
    if net.n_inputs == 11:  # the two 11-9-7-3 nets were picked for this
        assert searched > 0


def test_pattern_search_declines_too_many_free_neurons(case):
    net, _, x, _, _, centres = case
    ps = pattern_flip_search(net, x[centres[0]], net.n_inputs, max_free=0)
    fb = flip_bounds(net, x[centres[0]], net.n_inputs)
    assert ps.complete == fb.certified and ps.indices is None and ps.n_free == fb.n_free[0]


@pytest.mark.parametrize("solver,encoding,max_free", [("minicard", "native", 20), ("glucose4", "totalizer", 20),
                                                      ("minicard", "native", 0)])
def test_min_flips_with_bounds_matches_brute_force(case, solver, encoding, max_free):
    """The certified minimal k equals the least Hamming distance to another label over all 2^n
    inputs; ``max_free=0`` sends every undecided k to the local search, then to the SAT call with
    the fixed neurons assumed."""
    net, model, x, _, labels, centres = case
    by = set()
    with SatInverter(encode(net, encoding), model=model, solver=solver, time_s=30, search_s=0.05) as inv:
        for c in centres:
            other = labels != labels[c]
            truth = int((x[other] != x[c]).sum(1).min()) if other.any() else None
            r = inv.min_flips(x[c], max_free=max_free)
            by |= {s["by"] for s in r.steps}
            assert r.status is not SatResult.UNKNOWN
            assert r.k == truth, (c, r.steps)
            if truth is None:
                assert r.lower_bound == net.n_inputs + 1
                continue
            assert r.certified and r.lower_bound == truth
            assert (np.array(r.flipped) != x[c]).sum() == truth and r.new_label != labels[c]
            assert all("fixed" in s for s in r.steps)
            plain = inv.min_flips(x[c], bounds=False)
            assert plain.k == truth and all(s["by"] == "sat" for s in plain.steps)
    if max_free == 0:
        assert "patterns" not in by
        if not (labels == labels[0]).all():
            assert "search" in by or "sat" in by


def test_bounds_certify_steps_without_the_solver_on_a_robust_input():
    """A 6-input net whose only neuron needs 3 flips to change: k = 1, 2 are ruled out by bounds."""
    from netinvert.bnn import IntegerBNN

    net = IntegerBNN(layers=((np.ones((1, 6), np.int8), np.array([3])),), head=np.array([[1], [-1]], np.int8))
    bits = np.array([1, 1, 1, 1, 1, 0])  # count 5, fires while >= 3: needs 3 flips
    with SatInverter(encode(net, "native"), solver="minicard", time_s=10) as inv:
        r = inv.min_flips(bits)
    assert [s["by"] for s in r.steps] == ["bounds", "bounds", "patterns"]
    assert r.k == 3 and r.certified and r.steps[0]["fixed"] == 1 and r.steps[2]["free"] == [1]


def test_listing_through_the_pattern_table_is_exact(case):
    """With bounds, each listed neighbour's label comes from the free neurons' table: same answers."""
    net, _, x, _, labels, centres = case
    for c in centres:
        dist = (x != x[c]).sum(1)
        for k in range(1, 5):
            exists_k = (labels[dist == k] != labels[c]).any()
            for fb in (flip_bounds(net, x[c], k), flip_bounds(net, x[c], k + 2)):
                idx, complete = exhaustive_flip_search(net, x[c], k, bounds=fb)
                assert complete and (idx is not None) == exists_k, (c, k)
                if idx is not None:
                    y = x[c].copy()
                    y[idx] ^= 1
                    assert len(idx) == k and net.predict(y[None])[0] != labels[c]


def test_min_flips_listing_with_bounds_matches_brute_force(case):
    net, model, x, _, labels, centres = case
    with SatInverter(encode(net, "native"), model=model, solver="minicard", time_s=30, search_s=0.05) as inv:
        for c in centres[:4]:
            other = labels != labels[c]
            truth = int((x[other] != x[c]).sum(1).min()) if other.any() else None
            r = inv.min_flips(x[c], enumerate_up_to=100)
            assert r.k == truth and (truth is None or r.certified)
            listed = [s for s in r.steps if s["by"] == "enumeration"]
            assert listed and all("fixed" in s for s in listed)


@pytest.mark.parametrize("seed", range(6))
def test_label_changing_patterns_match_a_direct_forward_pass(seed):
    """The branch and bound over free-neuron patterns finds exactly the label-changing ones."""
    from netinvert.bnn._robust import _bad_patterns

    shape = [(10, (8, 6, 5), 4), (12, (9, 7), 5), (9, (7,), 3)][seed % 3]
    net = export_bnn(random_bnn(*shape, seed=100 + seed, ternary=seed % 2 == 1))
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x = rng.integers(0, 2, net.n_inputs)
        for k in range(1, net.n_inputs + 1):
            fb = flip_bounds(net, x, k)
            free1 = np.flatnonzero(~fb.fixed[0])
            want = label_changing_patterns(net, fb, free1)
            assert np.array_equal(_bad_patterns(net, fb, free1), want), (seed, k)
