"""Inversion queries: preimages under constraints, UNSAT answers, time-outs, enumeration, flips."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from netinvert.bnn import BudgetedSolver, SatInverter, SatResult, encode, export_bnn, local_search_candidate


def _label_sets(x: np.ndarray, labels: np.ndarray) -> dict[int, set[tuple[int, ...]]]:
    return {k: {tuple(r) for r in x[labels == k]} for k in range(int(labels.max()) + 1)}


@pytest.mark.parametrize("solver,encoding", [("glucose4", "totalizer"), ("minicard", "native"), ("cadical153", "sortnet")])
def test_preimage_of_every_label_is_checked_and_unsat_when_none(tiny, solver, encoding):
    model, x, labels = tiny
    enc = encode(export_bnn(model), encoding)
    with SatInverter(enc, model=model, solver=solver, time_s=10) as inv:
        for k in range(4):
            p = inv.preimage(k)
            if (labels == k).any():
                assert p.status is SatResult.SAT
                assert int(model.predict(torch.tensor([p.bits])).item()) == k
            else:
                assert p.status is SatResult.UNSAT and p.bits is None


@pytest.mark.parametrize("fixture", ["tiny", "tiny_ternary"])
def test_native_inference_admits_no_other_label(fixture, request):
    """Inference on the native path is guided by phases, so agreement alone could hide a CNF that
    also accepts another label: for every input, the CNF with any other output must be UNSAT."""
    model, x, labels = request.getfixturevalue(fixture)
    enc = encode(export_bnn(model), "native")
    with SatInverter(enc, model=model, solver="minicard", time_s=10) as inv:
        for bits, want in zip(x, labels):
            assert inv.infer(bits).label == want
            out = inv._solver.solve([*enc.input_assumptions(list(bits)), -enc.outputs[int(want)]])
            assert out.status is SatResult.UNSAT


def test_label_without_preimage_is_unsat():
    """Two identical score rows: the higher index can never win a tie, so it has no preimage."""
    from netinvert.bnn import BNN

    model = BNN(3, (2,), 2).eval()
    with torch.no_grad():
        model.head.weight.copy_(torch.ones(2, 2))
    enc = encode(export_bnn(model), "totalizer")
    with SatInverter(enc, model=model, time_s=5) as inv:
        r = inv.preimage(1)
        assert r.status is SatResult.UNSAT and r.to_dict()["status"] == "unsat"
        assert inv.preimage(0).status is SatResult.SAT


def test_fixed_pixels_hidden_values_and_hamming_ball(tiny):
    model, x, labels = tiny
    net = export_bnn(model)
    enc = encode(net, "totalizer")
    hidden = net.hidden(x)[0]
    with SatInverter(enc, model=model, time_s=10) as inv:
        for k in range(4):
            fixed = {0: 1, 3: 0, 7: 1}
            ok = (labels == k) & (x[:, 0] == 1) & (x[:, 3] == 0) & (x[:, 7] == 1)
            p = inv.preimage(k, fixed=fixed)
            assert (p.status is SatResult.SAT) == ok.any()
            if p.bits is not None:
                assert p.bits[0] == 1 and p.bits[3] == 0 and p.bits[7] == 1
            req = {(0, 1): 0, (0, 2): 1}
            ok = (labels == k) & (hidden[:, 1] == 0) & (hidden[:, 2] == 1)
            p = inv.preimage(k, hidden=req)
            assert (p.status is SatResult.SAT) == ok.any()
            if p.bits is not None:
                h = net.hidden(np.array([p.bits]))[0][0]
                assert h[1] == 0 and h[2] == 1
            ref = x[100]
            for radius in (0, 1, 2):
                dist = (x != ref).sum(1)
                ok = (labels == k) & (dist <= radius)
                p = inv.preimage(k, near=ref, max_flips=radius)
                assert (p.status is SatResult.SAT) == ok.any(), (k, radius)
                if p.bits is not None:
                    assert (np.array(p.bits) != ref).sum() <= radius


def test_enumeration_lists_exactly_the_preimages(tiny):
    model, x, labels = tiny
    sets = _label_sets(x, labels)
    enc = encode(export_bnn(model), "sortnet")
    with SatInverter(enc, model=model, time_s=20) as inv:
        for k in range(4):
            _r = inv.preimages(k, limit=2000)
            found, status = [list(x) for x in _r.inputs], _r.status
            assert status is SatResult.UNSAT and _r.complete  # the list is complete
            assert {tuple(f) for f in found} == sets[k] and len(found) == len(sets[k])
        # blocking clauses were retired: the formula is unchanged for later queries
        assert inv.preimage(int(labels[0])).status is SatResult.SAT
        _r = inv.preimages(int(labels[0]), limit=3)
        found, status = _r.inputs, _r.status
        assert status is SatResult.SAT and len({tuple(f) for f in found}) == 3


def _pigeonhole(s: BudgetedSolver, n: int) -> None:
    """n + 1 pigeons in n holes: hard for CDCL, so it exercises the time budget."""
    p = [[s.new_var() for _ in range(n)] for _ in range(n + 1)]
    for row in p:
        s.add_clause(row)
    for h in range(n):
        for i in range(n + 1):
            for j in range(i + 1, n + 1):
                s.add_clause([-p[i][h], -p[j][h]])


@pytest.mark.parametrize("solver", ["glucose4", "cadical153"])
def test_time_budget_returns_unknown(tiny, solver):
    enc = encode(export_bnn(tiny[0]), "totalizer")
    with BudgetedSolver(enc, solver=solver, time_s=0.3) as s:
        _pigeonhole(s, 11)
        t0 = time.perf_counter()
        out = s.solve()
        assert out.status is SatResult.UNKNOWN and out.model is None
        assert time.perf_counter() - t0 < 3.0


def test_min_flips_is_minimal_and_certified(digits_bnn, digits_net):
    model, bits, _ = digits_bnn
    enc = encode(digits_net, "native")
    with SatInverter(enc, model=model, solver="minicard", time_s=20) as inv:
        for x in bits[:4]:
            r = inv.min_flips(x, max_k=2)
            label = int(model.predict(torch.as_tensor(x[None])).item())
            flips1 = np.array([np.where(np.arange(64) == j, 1 - x, x) for j in range(64)])
            any1 = (model.predict(torch.as_tensor(flips1)).numpy() != label).any()
            if r.k is None:
                assert r.lower_bound > 1 or r.status is SatResult.UNKNOWN
                assert not any1 or r.status is SatResult.UNKNOWN
                continue
            assert r.certified and r.new_label != label
            assert int(model.predict(torch.tensor([r.flipped])).item()) == r.new_label
            assert (np.array(r.flipped) != x).sum() == r.k
            assert (r.k == 1) == any1  # k > 1 only when no single flip changes the label


def test_bad_arguments_raise(tiny):
    enc = encode(export_bnn(tiny[0]), "totalizer")
    with SatInverter(enc, time_s=1) as inv:
        with pytest.raises(ValueError, match="'label' parameter of SatInverter must be an int in \\[0, 3\\]"):
            inv.preimage(7)
        with pytest.raises(ValueError, match="must hold 10 bits"):
            inv.infer([0, 1])
    with pytest.raises(ValueError, match="'with' block"):
        SatInverter(enc).preimage(0)


def test_enumerated_small_k_agrees_with_sat(digits_bnn, digits_net):
    """Listing every k-flip neighbour certifies the same minimal k as the solver."""
    model, bits, _ = digits_bnn
    enc = encode(digits_net, "native")
    with SatInverter(enc, model=model, solver="minicard", time_s=20) as inv:
        for x in bits[:6]:
            fast = inv.min_flips(x, max_k=2, enumerate_up_to=10_000)
            slow = inv.min_flips(x, max_k=2)
            assert all(s["by"] == "enumeration" for s in fast.steps)
            if slow.status is not SatResult.UNKNOWN:
                assert fast.k == slow.k and fast.lower_bound == slow.lower_bound
            if fast.k is not None:
                assert fast.certified and fast.new_label != int(model.predict(torch.as_tensor(x[None])).item())


def test_candidate_hint_respects_label_and_constraints(tiny):
    from netinvert.bnn import candidate_hint

    model, x, labels = tiny
    net = export_bnn(model)
    k = int(labels[5])
    fixed = {0: int(x[5, 0]), 1: int(x[5, 1])}
    hint = candidate_hint(net, x, k, fixed=fixed, near=x[5])
    assert hint is not None and int(net.predict(hint[None])[0]) == k
    assert (hint == x[5]).all()  # x[5] itself has the label, meets the fixed bits and is nearest
    assert candidate_hint(net, x[labels != k], k) is None
    with SatInverter(encode(net, "totalizer"), model=model, time_s=5) as inv:
        p = inv.preimage(k, fixed=fixed, phases=hint)
        assert p.status is SatResult.SAT and p.bits[0] == fixed[0]


def test_local_search_candidate_reaches_labels_and_respects_constraints(digits_bnn, digits_net):
    model, xt, _ = digits_bnn
    for k in sorted(set(digits_net.predict(xt).tolist())):  # labels known to have a preimage
        c = local_search_candidate(digits_net, k, fixed={0: 1, 63: 1}, time_s=2.0, seed=k)
        assert c is not None and int(digits_net.predict(c[None])[0]) == k
        assert c[0] == 1 and c[63] == 1
    x = xt[0]
    for k in range(10):
        c = local_search_candidate(digits_net, k, start=x, max_flips=3, time_s=0.2)
        if c is not None:
            assert int((c != x).sum()) <= 3 and int(digits_net.predict(c[None])[0]) == k


@pytest.mark.parametrize("solver,encoding", [("minicard", "native"), ("glucose4", "sortnet")])
def test_default_preimage_search_is_conflict_free_on_digits(digits_bnn, digits_net, solver, encoding):
    """The local-search hint turns unhinted preimages (half of them time-outs before) into
    conflict-free SAT calls; every answer is still checked by the PyTorch forward pass."""
    model, xt, _ = digits_bnn
    with SatInverter(encode(digits_net, encoding), model=model, solver=solver, time_s=5) as inv:
        for k in sorted(set(digits_net.predict(xt).tolist())):
            p = inv.preimage(k)
            assert p.status is SatResult.SAT and p.conflicts == 0
            assert int(model.predict(torch.tensor([p.bits])).item()) == k
    with pytest.raises(ValueError, match="search_s"):
        SatInverter(encode(digits_net, "native"), search_s=-1)


def test_native_enumeration_on_digits_lists_distinct_checked_preimages(digits_bnn, digits_net):
    """Neighbour/local-search hints let Minicard list preimages (plain search found 2 in 3 s)."""
    model, xt, _ = digits_bnn
    label = int(np.bincount(digits_net.predict(xt)).argmax())
    with SatInverter(encode(digits_net, "native"), model=model, solver="minicard", time_s=20) as inv:
        _r = inv.preimages(label, limit=30, fixed={0: 0})
    found, status = [list(x) for x in _r.inputs], _r.status
    assert status is SatResult.SAT and len({tuple(f) for f in found}) == 30
    assert all(f[0] == 0 for f in found)
    assert (model.predict(torch.tensor(found)) == label).all()


def _importable(name: str) -> str | None:
    """None if PySAT can build solver ``name`` here, else why not."""
    from pysat.solvers import Solver

    from netinvert.bnn import SOLVERS

    try:
        Solver(name=SOLVERS.get(name).pysat_name).delete()
    except (ImportError, NotImplementedError, RuntimeError) as exc:  # a PySAT build without it
        return f"{name} cannot be loaded by this PySAT: {exc}"
    return None


@pytest.mark.parametrize("solver", __import__("netinvert.bnn", fromlist=["list_solvers"]).list_solvers())
def test_every_registered_solver_agrees_with_brute_force(solver):
    """Inference of every input and preimage existence of every label, per solver, on a 6-input net
    (native cardinality solvers also on the native encoding)."""
    from bnn_helpers import all_inputs, random_bnn

    from netinvert.bnn import SOLVERS

    reason = _importable(solver)
    if reason:
        pytest.skip(reason)
    model = random_bnn(6, (4,), 4, seed=2)
    net = export_bnn(model)
    x = all_inputs(6)
    labels = net.predict(x)
    encodings = ["totalizer"] + (["native"] if SOLVERS.get(solver).native_cardinality else [])
    for encoding in encodings:
        with SatInverter(encode(net, encoding), model=model, solver=solver, time_s=20, search_s=0) as inv:
            assert inv.solver_name == solver
            assert [inv.infer(b).label for b in x] == labels.tolist()
            for k in range(4):
                p = inv.preimage(k)
                assert p.status is (SatResult.SAT if (labels == k).any() else SatResult.UNSAT)
                if p.bits is not None:
                    assert labels[int("".join(map(str, p.bits)), 2)] == k


def test_auto_solver_is_minicard_for_native_and_glucose_otherwise(tiny):
    from netinvert.bnn import default_solver

    net = export_bnn(tiny[0])
    assert default_solver(encode(net, "native")) == "minicard" and default_solver(encode(net, "sortnet")) == "glucose4"
    with SatInverter(encode(net, "native")) as inv:
        assert inv.solver == "auto" and inv.solver_name == "minicard"


def test_min_flips_on_a_net_without_hidden_layer_matches_brute_force():
    from bnn_helpers import all_inputs

    from netinvert.bnn import BNN

    torch.manual_seed(0)
    model = BNN(6, (), 3).eval()
    net = export_bnn(model)
    x = all_inputs(6)
    labels = net.predict(x)
    with SatInverter(encode(net, "totalizer"), model=model, time_s=10) as inv:
        for i in (0, 21, 63):
            dist = (x != x[i]).sum(1)
            want = int(dist[labels != labels[i]].min()) if (labels != labels[i]).any() else None
            r = inv.min_flips(x[i], enumerate_up_to=100)
            assert r.k == want and (want is None or r.certified)


def test_infer_reports_propagation_on_a_constant_net():
    from netinvert.bnn import IntegerBNN

    net = IntegerBNN(layers=((np.array([[1, 1]], np.int8), np.array([2])),), head=np.array([[0], [0]], np.int8))
    with SatInverter(encode(net, "totalizer"), time_s=5) as inv:
        for bits in ([0, 0], [1, 0], [1, 1]):
            r = inv.infer(bits)
            assert r.label == 0 and r.by_propagation and r.conflicts == 0


def test_queries_leave_the_encoding_unchanged(tiny):
    model, x, _ = tiny
    enc = encode(export_bnn(model), "totalizer")
    before = (enc.n_vars, enc.n_clauses, dict(enc.stats))
    with SatInverter(enc, model=model, time_s=10) as inv:
        inv.preimages(0, limit=3)
        inv.min_flips(x[5], max_k=2)
    assert (enc.n_vars, enc.n_clauses, dict(enc.stats)) == before
    with pytest.raises(TypeError):
        enc.stats["encode_seconds"] = 1.0
