"""The linear reasoning over flips (``_pattern_sat``) checked against brute force.

Every claim it makes -- a surrogate certificate refutes a 0-1 system, a label-changing pattern is
(un)reachable within ``k`` flips, a witness changes the label -- is compared with exhaustive
evaluation on tiny systems and nets.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bnn_helpers import all_inputs, random_bnn
from netinvert.bnn import SatResult, export_bnn
from netinvert.bnn._pattern_sat import _lp, _integer_weights, _realise, _refutes, _shrink, realise_patterns
from netinvert.bnn._robust import _bad_patterns, flip_bounds, pattern_flip_search


def _solutions(A: np.ndarray, b: np.ndarray, k: int) -> bool:
    n = A.shape[1]
    for r in range(k + 1):
        for idx in itertools.combinations(range(n), r):
            if np.all(A[:, list(idx)].sum(1) >= b):
                return True
    return False


@pytest.mark.parametrize("seed", range(40))
def test_refutation_and_branch_and_bound_match_brute_force(seed):
    """Random {-1, 0, 1} systems ``A f >= b, sum f <= k`` over 9 bits: a certificate never refutes a
    solvable system, a witness always solves it, and UNSAT answers are right."""
    rng = np.random.default_rng(seed)
    m, n, k = int(rng.integers(2, 6)), 9, int(rng.integers(1, 5))
    A = rng.integers(-1, 2, (m, n)).astype(np.int64)
    b = rng.integers(-2, k + 1, m).astype(np.int64)
    truth = _solutions(A, b, k)
    feasible, _, y = _lp(A.astype(float), b.astype(float), k, np.zeros(n), np.ones(n))
    if not feasible:
        w = _integer_weights(y)
        if _refutes(w, A, b, k):
            assert not truth
            assert _refutes(_shrink(w, A, b, k), A, b, k)
    verdict, idx, _ = _realise(A, b, k, None, [0], 10_000)
    assert verdict is not SatResult.UNKNOWN
    assert (verdict is SatResult.SAT) == truth, seed
    if idx is not None:
        assert len(idx) <= k and np.all(A[:, idx].sum(1) >= b)


def test_realise_patterns_is_exact():
    """On tiny nets, reaching a label-changing pattern within k flips iff some input that close has
    another label; the witness has at most k flips and another label. Both answers occur with
    label-changing patterns present (so refutations are exercised, not only empty lists)."""
    decided = {"sat": 0, "unsat": 0}
    for seed in range(6):
        _check_realise(seed, decided)
    assert decided["sat"] > 0 and decided["unsat"] > 0


def _check_realise(seed: int, decided: dict[str, int]) -> None:
    shape = [(10, (8, 6), 4), (12, (9, 7), 5), (9, (7,), 3)][seed % 3]
    net = export_bnn(random_bnn(*shape, seed=200 + seed, ternary=seed % 2 == 1))
    x = all_inputs(net.n_inputs).astype(np.int64)
    labels = net.predict(x)
    rng = np.random.default_rng(seed)
    for c in rng.choice(len(x), 5, replace=False):
        dist = (x != x[c]).sum(1)
        for k in range(1, net.n_inputs + 1):
            fb = flip_bounds(net, x[c], k)
            if fb.certified:
                continue
            free1 = np.flatnonzero(~fb.fixed[0])
            codes = _bad_patterns(net, fb, free1)
            exists = bool((labels[dist <= k] != labels[c]).any())
            r = realise_patterns(net, x[c], k, fb, free1, codes, max_nodes=100_000)
            assert r.status is not SatResult.UNKNOWN
            assert (r.status is SatResult.SAT) == exists, (seed, c, k)
            decided[r.status.value] += len(codes) > 0
            if r.indices is not None:
                y = x[c].copy()
                y[r.indices] ^= 1
                assert len(r.indices) <= k and net.predict(y[None])[0] != labels[c]
            # the pattern search with and without the linear step agrees
            assert (pattern_flip_search(net, x[c], k, lp=False, max_free=net.n_inputs).indices is None) == (not exists)
