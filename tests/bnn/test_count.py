"""Counting and sampling preimages: checked against brute force over every input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netinvert.bnn import SatResult, count_preimages, dp_input_order, encode, export_bnn, sample_preimages, save_marginal_heatmap

CLAUSAL = ["seqcounter", "sortnet", "totalizer"]


def _dp_all(net, **kw):
    """Every label's count by the DP method, as one CountResult per label."""
    r = count_preimages(net, 0, method="dp", **kw)
    status = [SatResult.UNKNOWN if c is None else SatResult.SAT if c else SatResult.UNSAT for c in r.all_labels]
    return [type(r)(k, c, True, status[k], r.seconds, "dp", r.n_inputs, r.all_labels) for k, c in enumerate(r.all_labels)]


@pytest.mark.parametrize("name", CLAUSAL)
def test_exact_counts_equal_brute_force(tiny_ternary, name):
    """Every label, every clausal encoding: Ganak's projected count == enumeration of all 2^9 inputs."""
    model, x, labels = tiny_ternary
    enc = encode(export_bnn(model), name)
    counts = [count_preimages(enc, k, method="exact", time_s=30) for k in range(3)]
    for k, r in enumerate(counts):
        assert r.status is not SatResult.UNKNOWN and r.exact
        assert r.count == int((labels == k).sum()), (name, k)
    assert sum(r.count for r in counts) == 2 ** 9


def test_exact_counts_two_hidden_layers(tiny):
    model, x, labels = tiny
    enc = encode(export_bnn(model), "totalizer")
    counts = [count_preimages(enc, k, time_s=60).count for k in range(4)]
    assert counts == [int((labels == k).sum()) for k in range(4)] and sum(counts) == 2 ** 10


@pytest.mark.parametrize("name", CLAUSAL)
def test_approximate_counts_within_tolerance(tiny_ternary, name):
    """ApproxMC's (epsilon, delta) guarantee, checked against the brute-force counts."""
    model, x, labels = tiny_ternary
    enc = encode(export_bnn(model), name)
    eps = 0.8
    for k in range(3):
        r = count_preimages(enc, k, method="approx", time_s=30, epsilon=eps, delta=0.2)
        true = int((labels == k).sum())
        assert not r.exact and r.count is not None
        if true == 0:
            assert r.count == 0
        else:
            assert true / (1 + eps) <= r.count <= true * (1 + eps), (k, r.count, true)


def test_counter_time_limit_returns_unknown(digits_net):
    enc = encode(digits_net, "totalizer")  # 64 inputs: Ganak needs far more than 0.5 s
    r = count_preimages(enc, 3, method="exact", time_s=0.5)
    assert r.status is SatResult.UNKNOWN and r.count is None and r.seconds < 3


def test_native_cannot_be_counted(tiny):
    with pytest.raises(ValueError, match="clausal encoding"):
        count_preimages(encode(export_bnn(tiny[0]), "native"), 0)


def test_samples_are_preimages_and_heatmap_is_written(tiny, tmp_path):
    model, x, labels = tiny
    enc = encode(export_bnn(model), "totalizer")
    k = int(np.bincount(labels).argmax())
    r = sample_preimages(enc, k, 40, time_s=30, seed=1, model=model)
    assert r.status is SatResult.SAT and r.samples.shape == (40, 10)
    assert (model.predict(torch.as_tensor(r.samples)).numpy() == k).all()
    assert len({tuple(s) for s in r.samples}) > 5  # diverse, not one preimage repeated
    # the sample marginals are close to the exact marginals over all preimages
    exact = x[labels == k].mean(0)
    assert np.abs(r.marginals - exact).mean() < 0.2
    png = save_marginal_heatmap(r.marginals, (2, 5), tmp_path / "m.png", title="t")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("fixture", ["tiny", "tiny_ternary"])
def test_dynamic_programming_counts_every_label_exactly(request, fixture):
    """count_all_labels (no SAT) == brute force through PyTorch, zero weights and two layers included."""
    model, x, labels = request.getfixturevalue(fixture)
    rows = _dp_all(export_bnn(model))
    assert [r.count for r in rows] == [int((labels == k).sum()) for k in range(len(rows))]
    assert all(r.exact and r.method == "dp" for r in rows) and sum(r.count for r in rows) == len(x)
    assert [r.status for r in rows] == [SatResult.SAT if (labels == k).any() else SatResult.UNSAT for k in range(len(rows))]


def test_dynamic_programming_on_a_wider_net_and_its_state_limit(digits_net):
    """16 inputs (Ganak took ~20 s a label on this net): every label equals brute force over 2^16 inputs."""
    from bnn_helpers import all_inputs, random_bnn

    model = random_bnn(16, (8,), 4, seed=11)
    labels = model.predict(torch.as_tensor(all_inputs(16))).numpy()
    rows = _dp_all(export_bnn(model))
    assert [r.count for r in rows] == [int((labels == k).sum()) for k in range(4)]
    capped = _dp_all(digits_net, max_states=1000)
    assert all(r.status is SatResult.UNKNOWN and r.count is None for r in capped)


def test_dynamic_programming_on_a_fan_in_net_with_unread_inputs():
    """A one-layer net whose neurons read 3 of 14 inputs (two inputs read by none): neurons leave the
    state as they finish and unread inputs double the counts; every label equals brute force."""
    from bnn_helpers import all_inputs, random_bnn

    model = random_bnn(14, (7,), 5, seed=4)
    with torch.no_grad():
        w = model.linears[0].weight
        keep = torch.zeros_like(w)
        for j in range(7):
            keep[j, [(2 * j) % 12, (2 * j + 1) % 12, (2 * j + 5) % 12]] = 1  # inputs 12, 13 unread
        w.mul_(keep)
    model.linears[0].ternary_delta = 1e-6  # zero latent weights -> zero weights
    net = export_bnn(model)
    assert sorted(dp_input_order(net.layers[0][0])) == list(range(12))
    labels = model.predict(torch.as_tensor(all_inputs(14))).numpy()
    rows = _dp_all(net)
    assert [r.count for r in rows] == [int((labels == k).sum()) for k in range(5)]


def _net_with_unread_inputs():
    """8 inputs, of which inputs 6 and 7 are read by no neuron (as after fan-in pruning)."""
    from bnn_helpers import all_inputs, random_bnn

    model = random_bnn(8, (4,), 3, seed=7)
    with torch.no_grad():
        model.linears[0].weight[:, 6:] = 0
    model.linears[0].ternary_delta = 1e-6
    labels = model.predict(torch.as_tensor(all_inputs(8))).numpy()
    return export_bnn(model), [int((labels == k).sum()) for k in range(3)]


@pytest.mark.parametrize("method", ["exact", "approx"])
def test_counters_count_inputs_that_no_neuron_reads(method):
    """Such inputs occur in no clause and the counters would drop them from the projection."""
    net, brute = _net_with_unread_inputs()
    enc = encode(net, "totalizer")
    assert not {abs(l) for c in enc.formula.clauses for l in c} & set(enc.inputs[6:])
    counts = [count_preimages(enc, k, method=method, time_s=30, epsilon=0.1, delta=0.05).count for k in range(3)]
    if method == "exact":
        assert counts == brute
    else:
        assert all(b / 1.1 <= c <= b * 1.1 for c, b in zip(counts, brute))


def test_samples_draw_the_inputs_no_neuron_reads():
    net, _ = _net_with_unread_inputs()
    r = sample_preimages(encode(net, "totalizer"), 0, 40, time_s=30)
    assert len(r.samples) == 40 and (net.predict(r.samples) == 0).all()
    assert all(0 < r.samples[:, j].mean() < 1 for j in (6, 7))  # both values of each free input occur


def test_dynamic_programming_edge_nets():
    """Hand-made integer nets: neurons that read no input (always on / always off), a layer reading
    all 64 inputs whose head gives every input one label (a count of 2^64, past uint64), and a
    two-layer net with a sparse first layer (finished neurons stay in the state)."""
    from bnn_helpers import all_inputs, random_bnn

    from netinvert.bnn import IntegerBNN

    lits = np.array([[1, -1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=np.int8)
    net = IntegerBNN(layers=((lits, np.array([1, 0, 1, 2])),), head=np.array([[1, 1, -1, 0], [0, -1, 1, 1]], dtype=np.int8))
    labels = net.predict(all_inputs(4))
    assert [r.count for r in _dp_all(net)] == [int((labels == k).sum()) for k in range(2)]

    blocks = np.kron(np.eye(8, dtype=np.int8), np.ones((1, 8), dtype=np.int8))  # 8 neurons x 8 inputs each
    flat = IntegerBNN(layers=((blocks, np.full(8, 4)),), head=np.zeros((3, 8), dtype=np.int8))
    assert [r.count for r in _dp_all(flat)] == [2**64, 0, 0]

    model = random_bnn(12, (6, 4), 3, seed=9)
    with torch.no_grad():
        mask = torch.zeros(6, 12)
        for j in range(6):
            mask[j, [j, (j + 3) % 12, (j + 7) % 12]] = 1
        model.linears[0].weight.mul_(mask)
    model.linears[0].ternary_delta = 1e-6
    sparse = export_bnn(model)
    assert ((sparse.layers[0][0] != 0).sum(1) <= 3).all()
    labels = model.predict(torch.as_tensor(all_inputs(12))).numpy()
    assert [r.count for r in _dp_all(sparse)] == [int((labels == k).sum()) for k in range(3)]
