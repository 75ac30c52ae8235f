"""The factored exact counter (input groups, neuron blocks, dead classes) against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bnn_helpers import all_inputs, random_bnn

from netinvert.bnn import IntegerBNN, SatResult, count_preimages, export_bnn
from netinvert.bnn import count_labels_factored, input_groups, neuron_blocks


def _brute(net: IntegerBNN) -> list[int]:
    labels = net.predict(all_inputs(net.n_inputs))
    return [int((labels == k).sum()) for k in range(net.n_classes)]


def _blocky(seed: int, n_inputs: int, blocks: list[tuple[list[int], list[int]]], n_classes: int, *,
            ties: tuple[tuple[int, int, int], ...] = (), ternary_head: bool = False) -> IntegerBNN:
    """A random one-layer net whose neurons read only their block's inputs; ``ties`` (i, k, sign)
    make input k's column equal to sign * input i's (so the two form one group); ``ternary_head``
    zeroes the head weights under 0.3 in magnitude (about 30% of them)."""
    width = sum(len(j) for j, _ in blocks)
    model = random_bnn(n_inputs, (width,), n_classes, seed=seed)
    with torch.no_grad():
        w = model.linears[0].weight
        mask = torch.zeros_like(w)
        for neurons, inputs in blocks:
            mask[np.ix_(neurons, inputs)] = 1
        w.mul_(mask)
        for i, k, sign in ties:
            w[:, k] = sign * w[:, i]
    model.linears[0].ternary_delta = 1e-6  # zero latent weights -> zero weights
    if ternary_head:
        model.head.ternary_delta = 0.3
    return export_bnn(model)


@pytest.mark.parametrize("seed", range(4))
def test_dense_and_ternary_nets_equal_brute_force(seed):
    """One block, no groups: the factored counter is the plain DP plus dead-class pruning."""
    net = export_bnn(random_bnn(10, (6,), 4, seed=seed, ternary=bool(seed % 2)))
    r = count_preimages(net, 0, method="factored", time_s=30)
    assert r.exact and r.method == "factored" and list(r.all_labels) == _brute(net)
    assert sum(r.all_labels) == 2**10


@pytest.mark.parametrize("seed", range(4))
def test_blocks_groups_and_unread_inputs_equal_brute_force(seed):
    """Three blocks of 5, 4 and 4 inputs (inputs 13, 14 read by none), tied and negated-tied columns,
    a constant neuron (random_bnn gives the last neuron a zero batch-norm scale)."""
    blocks = [([0, 1, 2], [0, 1, 2, 3, 4]), ([3, 4], [5, 6, 7, 8]), ([5, 6, 7], [9, 10, 11, 12])]
    net = _blocky(seed, 15, blocks, 5, ties=((0, 1, 1), (5, 6, -1), (9, 10, 1), (9, 11, 1)))
    groups, columns, unread = input_groups(net.layers[0][0])
    together = lambda *i: any(set(i) <= set(g) for g in groups)  # noqa: E731 (3 neurons: other columns may coincide too)
    assert unread == [13, 14] and together(0, 1) and together(5, 6) and together(9, 10, 11)
    assert len(neuron_blocks(columns)) == 3
    counts, info = count_labels_factored(net, time_s=30)
    assert counts == _brute(net) and sum(counts) == 2**15
    assert len(info["blocks"]) == 3


def test_negated_ties_are_one_group():
    """Input 1's column is minus input 0's: e true literals for the neurons of one sign are g - e
    for the other, with multiplicity C(g, e) (Vandermonde), as in the brute force."""
    lits = np.array([[1, -1, 1], [-1, 1, 1], [1, -1, -1]], dtype=np.int8)
    net = IntegerBNN(layers=((lits, np.array([2, 1, 2])),), head=np.array([[1, -1, 1], [-1, 1, 1], [1, 1, -1]], dtype=np.int8))
    groups, columns, _ = input_groups(lits)
    assert groups == [[0, 1], [2]]
    assert count_labels_factored(net, time_s=10)[0] == _brute(net)


def test_sixty_four_inputs_in_eight_blocks():
    """8 blocks of 8 inputs: a count of 2^64 (every input one label, the head all zero) does not
    wrap, and a random head over the same blocks matches a DP cross-check summing to 2^64."""
    blocks = np.kron(np.eye(8, dtype=np.int8), np.ones((1, 8), dtype=np.int8))
    flat = IntegerBNN(layers=((blocks, np.full(8, 4)),), head=np.zeros((3, 8), dtype=np.int8))
    assert count_labels_factored(flat, time_s=30)[0] == [2**64, 0, 0]
    rng = np.random.default_rng(0)
    lits = blocks * rng.choice(np.array([-1, 1], dtype=np.int8), size=blocks.shape)
    head = rng.choice(np.array([-1, 1], dtype=np.int8), size=(4, 8))
    net = IntegerBNN(layers=((lits.astype(np.int8), rng.integers(2, 7, size=8)),), head=head)
    counts, info = count_labels_factored(net, time_s=60)
    assert sum(counts) == 2**64 and info["blocks"] == [(1, 8)] * 8
    dp = count_preimages(net, 0, method="dp", time_s=60)  # neuron by neuron: also exact here
    assert list(dp.all_labels) == counts


def test_budget_gives_unknown_and_deeper_nets_are_refused():
    net = export_bnn(random_bnn(12, (8,), 4, seed=1))
    r = count_preimages(net, 2, method="factored", max_states=50)
    assert r.status is SatResult.UNKNOWN and r.count is None
    counts, info = count_labels_factored(net, max_states=50)
    assert counts is None and "states" in info["reason"]
    with pytest.raises(ValueError, match="exactly one hidden layer"):
        count_labels_factored(export_bnn(random_bnn(6, (4, 3), 2, seed=0)))


@pytest.mark.parametrize("seed", range(4))
def test_meet_in_the_middle_blocks_equal_brute_force(seed):
    """mitm_above=0 sends every block through the meet-in-the-middle histogram (halves of its groups,
    one hidden pattern per pair), ties and negated ties included; the result equals the DP's."""
    blocks = [([0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6]), ([4, 5, 6], [7, 8, 9, 10, 11, 12])]
    net = _blocky(seed, 14, blocks, 5, ties=((0, 1, 1), (2, 3, -1), (7, 8, 1)))
    counts, info = count_labels_factored(net, time_s=30, mitm_above=0)
    assert counts == _brute(net) and sum(counts) == 2**14
    assert info["mitm_blocks"] == 2 and info["mitm_pairs"] > 0
    assert count_labels_factored(net, time_s=30)[0] == counts  # the DP path


#: two blocks of 6 neurons over 9 inputs each (18 inputs: brute force stays quick)
TWO_WIDE_BLOCKS = [(list(range(6)), list(range(9))), (list(range(6, 12)), list(range(9, 18)))]


@pytest.mark.parametrize("seed", range(3))
def test_two_wide_blocks_and_dense_net_by_mitm(seed):
    """Two blocks of 9 inputs x 6 neurons and 10 classes (the label totals over pairs of score vectors,
    each side pruned by the other's score differences), and a dense or ternary one-block net, all
    through the meet in the middle."""
    net = _blocky(seed, 18, TWO_WIDE_BLOCKS, 10)
    counts, info = count_labels_factored(net, time_s=60, mitm_above=0)
    assert counts == _brute(net) and sum(counts) == 2**18
    assert len(info["final_sides"]) == 2
    dense = export_bnn(random_bnn(12, (7,), 6, seed=seed, ternary=bool(seed % 2)))
    assert count_labels_factored(dense, time_s=30, mitm_above=0)[0] == _brute(dense)


@pytest.mark.parametrize("seed", range(3))
def test_two_wide_blocks_with_a_ternary_head(seed):
    """The shape of the counted digits tier (two blocks, ternary first layer and head): a class a block
    does not read (zero head weights) keeps the pruning by reachable scores exact."""
    net = _blocky(seed, 18, TWO_WIDE_BLOCKS, 10, ternary_head=True)
    assert (net.head == 0).any()
    counts, info = count_labels_factored(net, time_s=60, mitm_above=0)
    assert counts == _brute(net) and sum(counts) == 2**18
    assert len(info["final_sides"]) == 2


class _FakeBar:
    """Records what count_labels_factored tells its progress bar."""

    def __init__(self, *args, **kwargs):
        self.n, self.stages, self.closed = 0, [], False

    def update(self, n):
        self.n += n

    def set_postfix_str(self, text):
        self.stages.append(text)

    def close(self):
        self.closed = True


def test_progress_counts_every_pair_and_closes_on_every_path(monkeypatch):
    """The bar's total is every pair formed (meet in the middle, then label totals), it names the stages, it is
    closed when the count ends and when it runs out of time, and count_preimages passes ``progress`` on; the
    counts do not change."""
    import netinvert.bnn._factored as factored

    bars = []
    monkeypatch.setattr(factored, "progress_bar", lambda *a, **k: bars.append(_FakeBar()) or bars[-1])
    monkeypatch.setattr(factored._Pairs, "unit", 1)
    net = _blocky(0, 18, TWO_WIDE_BLOCKS, 10)
    counts, info = count_labels_factored(net, time_s=60, mitm_above=0, progress=True)
    assert counts == _brute(net)
    bar = bars[-1]
    assert bar.closed and bar.n == info["mitm_pairs"] + info["pairs"] > 0
    assert bar.stages[0].startswith("block 1/2") and bar.stages[-1].startswith("label totals over")
    assert count_labels_factored(net, time_s=1e-9, mitm_above=0, progress=True)[0] is None and bars[-1].closed
    r = count_preimages(net, 0, method="factored", progress=True, time_s=60)
    assert list(r.all_labels) == counts and bars[-1].closed and bars[-1].n > 0
