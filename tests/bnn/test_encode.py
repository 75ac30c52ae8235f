"""CNF encodings: reified cardinality by brute force, propagation-only inference, DIMACS round trip."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pysat.formula import CNF, CNFPlus, IDPool
from pysat.solvers import Solver

from netinvert.bnn import BudgetedSolver, encode, export_bnn, list_cardinality_encodings, reify_atleast
from netinvert.exceptions import UnknownNameError

CLAUSAL = [e for e in list_cardinality_encodings() if e != "native"]


def test_registry_lists_all_encodings():
    assert set(list_cardinality_encodings()) == {"native", "seqcounter", "sortnet", "totalizer"}
    with pytest.raises(UnknownNameError, match="Valid names: native, seqcounter"):
        encode(None, "nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list_cardinality_encodings())
def test_reified_atleast_is_exact_and_propagates(name):
    """out <-> sum >= bound on every assignment of up to 6 literals (with a repeated one: weight 2)."""
    for n, bound in itertools.product(range(1, 7), range(-1, 9)):
        pool = IDPool()
        xs = [pool.id(("x", i)) for i in range(n)]
        out = pool.id("out")
        lits = [x if i % 3 else -x for i, x in enumerate(xs)] + [xs[-1]]  # xs[-1] counts twice
        f = CNFPlus()
        reify_atleast(name, lits, bound, out, pool, f)
        units = {c[0] for c in f.clauses if len(c) == 1}
        with Solver(name="minicard" if name == "native" else "glucose4", bootstrap_with=f.clauses) as s:
            for c, k in f.atmosts:
                s.add_atmost(c, k)
            for bits in itertools.product((0, 1), repeat=n):
                a = [x if b else -x for x, b in zip(xs, bits)]
                true = {abs(l) for l in a if l > 0}
                count = sum((abs(l) in true) == (l > 0) for l in lits)
                want = out if count >= bound else -out
                if name != "native":  # clausal encodings: unit propagation alone decides out
                    ok, prop = s.propagate(assumptions=a)
                    assert ok and want in set(prop) | units, (n, bound, bits)
                assert s.solve(assumptions=a) and want in s.get_model()


@pytest.mark.parametrize("name", list_cardinality_encodings())
@pytest.mark.parametrize("fixture", ["tiny", "tiny_ternary"])
def test_sat_inference_equals_torch_on_every_input(name, fixture, request):
    model, x, labels = request.getfixturevalue(fixture)
    enc = encode(export_bnn(model), name)
    solver = "minicard" if name == "native" else "glucose4"
    with BudgetedSolver(enc, solver=solver, time_s=5) as s:
        for bits, want in zip(x, labels):
            out = s.solve(enc.input_assumptions(bits))
            model_lits = set(out.model)
            assert [k for k, y in enumerate(enc.outputs) if y in model_lits] == [want]


@pytest.mark.parametrize("name", CLAUSAL)
def test_digits_inference_by_propagation_alone(name, digits_bnn, digits_net):
    """With inputs fixed, propagate() fixes every hidden and output variable with no conflict.

    Checked literally on 15 test inputs; then a full solve() takes no conflict (everything follows
    from the assumptions) and gives PyTorch's label on every test input for the totalizer and on
    every third one for the others (the benchmark runs all of them for every encoding).
    """
    model, bits, _ = digits_bnn
    enc = encode(digits_net, name)
    torch_pred = model.predict(torch.as_tensor(bits)).numpy()
    hidden = [v for layer in enc.hidden for v in layer]
    with BudgetedSolver(enc, solver="glucose4") as s:
        for x, want in zip(bits[:15], torch_pred[:15]):
            ok, fixed = s.propagate(enc.input_assumptions(x))
            assert ok
            assert all(v in fixed or -v in fixed for v in hidden)
            assert [k for k, y in enumerate(enc.outputs) if y in fixed] == [want]
            assert all(-y in fixed for k, y in enumerate(enc.outputs) if k != want)
    with Solver(name="minisat22", bootstrap_with=enc.formula.clauses) as s:
        step = 1 if name == "totalizer" else 3
        for x, want in zip(bits[::step], torch_pred[::step]):
            assert s.solve(assumptions=enc.input_assumptions(x))
            model_lits = s.get_model()
            assert model_lits[enc.outputs[want] - 1] > 0
        assert s.accum_stats()["conflicts"] == 0


def test_native_digits_inference_agrees(digits_bnn, digits_net):
    model, bits, _ = digits_bnn
    enc = encode(digits_net, "native")
    assert enc.native and enc.formula.atmosts
    torch_pred = model.predict(torch.as_tensor(bits)).numpy()
    with BudgetedSolver(enc, solver="minicard", time_s=5) as s:
        got = []
        for x in bits:
            m = set(s.solve(enc.input_assumptions(x)).model)
            got.append([k for k, y in enumerate(enc.outputs) if y in m][0])
    np.testing.assert_array_equal(got, torch_pred)


def test_native_needs_native_solver(tiny):
    enc = encode(export_bnn(tiny[0]), "native")
    with pytest.raises(ValueError, match="native cardinality"):
        BudgetedSolver(enc, solver="glucose4")


def test_dimacs_round_trip_through_a_solver(tmp_path, tiny):
    model, x, labels = tiny
    enc = encode(export_bnn(model), "sortnet")
    cnf_path, vmap_path = enc.save(tmp_path, "tiny", label=2)
    text = cnf_path.read_text()
    assert "c ind " + " ".join(map(str, enc.inputs)) + " 0" in text
    vmap = __import__("json").loads(vmap_path.read_text())
    assert vmap["inputs"] == enc.inputs and vmap["outputs"] == enc.outputs and vmap["label"] == 2
    cnf = CNF(from_file=str(cnf_path))
    assert cnf.nv == enc.n_vars and len(cnf.clauses) == enc.n_clauses + 1
    with Solver(name="cadical153", bootstrap_with=cnf.clauses) as s:
        for bits, want in zip(x[::37], labels[::37]):
            assumptions = [v if b else -v for v, b in zip(vmap["inputs"], bits)]
            assert s.solve(assumptions=assumptions) == (want == 2)
