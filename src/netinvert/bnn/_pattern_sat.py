"""Exact flip search at large radii: label-changing first-layer patterns decided by linear reasoning over the flips.

Why: within ``k`` flips of an input, :func:`~netinvert.bnn._robust.flip_bounds` leaves only ``m``
first-layer neurons free (20-36 on the 784-100-100-10 net at ``k`` = 4-12), so the label is a function
of which of them change (their *pattern*); :func:`~netinvert.bnn._robust._bad_patterns` lists the
label-changing patterns (often 100-2000). Deciding whether some flip set of size ``<= k`` reaches one of
them by listing flip sets visited 1.3e8 sets in 120 s without an answer (image 19 of the dense net,
``k`` = 8), and a SAT call on the whole network did not finish in 5 s either.

Reaching one pattern is a 0-1 linear system over the flips ``f``: a neuron that must change needs
``t_i . f >= need_i``, one that must not ``t_i . f <= need_i - 1`` (``t_i`` the +-1 move of each bit
towards the neuron's threshold), and ``sum f <= k``. Its linear relaxation is solved by HiGHS
(SciPy). When the relaxation is infeasible, the dual weights ``w`` give a surrogate inequality
``sum_j c_j f_j >= R`` (``c = w A``, ``R = w b``) that no ``f`` satisfies because the ``k`` largest
positive ``c_j`` sum to less than ``R``; the weights are rounded to integers and this check is redone
in exact integer arithmetic, so the refutation is a proof whatever the LP solver's tolerances. Rows
are dropped from the certificate while it still holds, and every listed pattern that agrees with the
pattern on the remaining rows is refuted with it (most patterns are never solved). When the
relaxation is feasible, a greedy pick and then a small branch and bound over the flips (the same LP
and exact check at every node) either find a flip set -- a witness, checked on the integer network --
or refute the whole pattern.

Tried and dropped: asking a SAT solver (Glucose, MiniSat; totalizer, sorting network or sequential
counter encodings of the layers after the first) for label-changing patterns one at a time, with
refuted sub-patterns as clauses: one call with 21 free neurons took 8-90 s (1.1M clauses, 4-13k
conflicts) where the interval branch and bound lists every such pattern in 0.003 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ._export import IntegerBNN
from ._robust import FlipBounds, _moves
from ._solve import SatResult

__all__ = ["PatternSatSearch", "realise_patterns"]

#: scale of the integer dual weights in the exact check (weights are in [0, 1] from the LP)
_SCALE = 1 << 24


@dataclass(frozen=True)
class PatternSatSearch:
    """Outcome of :func:`realise_patterns`.

    ``indices``: bits whose flip changes the label (None if none); ``status``: SAT (a witness),
    UNSAT (a proof that no input within ``k`` flips has another label) or UNKNOWN (deadline or
    node budget). ``n_patterns`` counts the label-changing patterns solved,
    ``n_refuted_lp`` those refuted by a certificate at the root, ``lp_calls`` the linear programs
    solved, ``n_free`` the free first-layer neurons.
    """

    status: SatResult
    indices: np.ndarray | None
    n_free: int
    n_patterns: int = 0
    n_refuted_lp: int = 0
    lp_calls: int = 0


def _topk_sum(c: np.ndarray, k: int) -> int:
    """Largest ``sum_j c_j f_j`` over ``f`` in {0, 1}^n with ``sum f <= k`` (exact for integer ``c``)."""
    pos = c[c > 0]
    if k <= 0 or not len(pos):
        return 0
    if len(pos) > k:
        pos = np.partition(pos, len(pos) - k)[-k:]
    return int(pos.sum())


def _refutes(w: np.ndarray, A: np.ndarray, b: np.ndarray, k: int, fixed1: np.ndarray | None = None,
             free: np.ndarray | None = None) -> bool:
    """True when integer weights ``w >= 0`` prove ``A f >= b, sum f <= k`` has no 0-1 solution
    (with the bits ``fixed1`` set and only ``free`` bits otherwise allowed): the surrogate row
    ``(w A) f >= w b`` cannot be met by the best ``k`` bits. Exact integer arithmetic."""
    c = w @ A
    rhs = int(w @ b)
    if fixed1 is not None and len(fixed1):
        rhs -= int(c[fixed1].sum())
        k -= len(fixed1)
    if k < 0:
        return True
    cf = c if free is None else c[free]
    return _topk_sum(cf, k) < rhs


def _lp(A: np.ndarray, b: np.ndarray, k: int, lo: np.ndarray, hi: np.ndarray) -> tuple[bool, np.ndarray | None, np.ndarray | None]:
    """Phase-one LP of ``A f >= b, sum f <= k, lo <= f <= hi``: minimise the total violation.

    Returns ``(feasible, f, y)``: ``f`` an LP solution when the violation is (numerically) zero,
    else ``y >= 0`` the dual weights of the rows (a candidate certificate, checked exactly by the
    caller). Feasibility here is only a hint; every conclusion is checked in integers.
    """
    from scipy.optimize import linprog

    r, n = A.shape
    # variables: f (n), s (r); minimise sum s; -A f - s <= -b; 1.f <= k
    c = np.concatenate([np.zeros(n), np.ones(r)])
    a_ub = np.zeros((r + 1, n + r))
    a_ub[:r, :n] = -A
    a_ub[:r, n:] = -np.eye(r)
    a_ub[r, :n] = 1
    b_ub = np.concatenate([-b, [k]]).astype(np.float64)
    bounds = np.vstack([np.column_stack([lo, hi]), np.column_stack([np.zeros(r), np.full(r, np.inf)])])
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:  # cannot happen for this always-feasible LP; treat as no information
        return True, None, None
    if res.fun <= 1e-7:
        return True, res.x[:n], None
    return False, None, np.maximum(-res.ineqlin.marginals[:r], 0.0)


def _integer_weights(y: np.ndarray) -> np.ndarray:
    top = float(y.max()) if len(y) else 0.0
    if top <= 0:
        return np.zeros(len(y), dtype=np.int64)
    return np.round(y / top * _SCALE).astype(np.int64)


def _shrink(w: np.ndarray, A: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Drop rows from a refuting weight vector while the exact check still holds (smallest first):
    fewer rows make a shorter clause, which rules out more patterns."""
    w = w.copy()
    for i in np.argsort(w, kind="stable"):
        if w[i] == 0:
            continue
        keep = w[i]
        w[i] = 0
        if not _refutes(w, A, b, k):
            w[i] = keep
    return w


def realise_patterns(net: IntegerBNN, bits: np.ndarray, k: int, bounds: FlipBounds, free1: np.ndarray,
                     bad_codes: np.ndarray, *, deadline: float | None = None,
                     max_nodes: int = 60) -> PatternSatSearch:
    """Decide whether at most ``k`` flips of ``bits`` reach one of the label-changing patterns.

    ``bad_codes`` are every change pattern of the free first-layer neurons ``free1`` that changes the
    label (bit ``i``: neuron ``free1[i]`` differs from its value at ``bits``), as found by
    :func:`~netinvert.bnn._robust._bad_patterns`. Each pattern is a 0-1 linear system over the flips
    (module docstring); a refuted sub-pattern (the rows its certificate needs) removes every listed
    pattern that agrees with it, so most patterns are never solved. SAT: a witness, checked on the
    integer net; UNSAT: every pattern refuted, a proof; UNKNOWN: the deadline or ``max_nodes``
    branch-and-bound nodes on one pattern ran out.
    """
    x = np.asarray(bits, dtype=np.int64).reshape(-1)
    m = len(free1)
    need, towards = _moves(net, x, bounds, free1)
    left = np.asarray(bad_codes, dtype=np.int64)
    shifts = np.arange(m, dtype=np.int64)
    n_pat = n_lp_ref = unresolved = 0
    lp_calls = [0]
    # patterns needing the fewest changes first: they are the likeliest to be reachable
    left = left[np.argsort(_popcount(left, m), kind="stable")]
    while len(left):
        if deadline is not None and time.perf_counter() > deadline:
            return PatternSatSearch(SatResult.UNKNOWN, None, m, n_pat, n_lp_ref, lp_calls[0])
        code = int(left[0])
        changed = ((code >> shifts) & 1).astype(bool)
        n_pat += 1
        # rows A f >= b: changed neurons reach their threshold, unchanged ones stay short of it
        sign = np.where(changed, 1, -1)
        A = (towards.T * sign[:, None]).astype(np.int64)  # (m, n)
        b = np.where(changed, need, 1 - need).astype(np.int64)
        idx = _greedy(A, b, k)
        verdict, w = (SatResult.SAT, None) if idx is not None else (None, None)
        if verdict is None:
            verdict, idx, w = _realise(A, b, k, deadline, lp_calls, max_nodes)
        if verdict is SatResult.SAT:
            y = x.copy()
            y[idx] ^= 1
            if int(net.predict(y[None])[0]) == bounds.label:  # the pattern decides the label on the ball
                raise RuntimeError("realise_patterns: a realised label-changing pattern kept the label.")
            return PatternSatSearch(SatResult.SAT, np.sort(idx), m, n_pat, n_lp_ref, lp_calls[0])
        if verdict is SatResult.UNKNOWN:  # undecided: keep looking for a witness among the others
            unresolved += 1
            left = left[1:]
            continue
        if w is None:
            left = left[1:]
            continue
        n_lp_ref += 1
        rows = np.flatnonzero(w)
        mask = int(np.sum(1 << rows.astype(np.int64))) if len(rows) else 0
        # no flip set within k gives these rows' neurons these values: drop every pattern agreeing there
        left = left[(left & mask) != (code & mask)]
    return PatternSatSearch(SatResult.UNKNOWN if unresolved else SatResult.UNSAT, None, m, n_pat, n_lp_ref, lp_calls[0])


def _greedy(A: np.ndarray, b: np.ndarray, k: int) -> np.ndarray | None:
    """Up to ``k`` bits meeting ``A f >= b``, picked one at a time by the deficit they remove (a
    heuristic: it only ever returns a checked solution, else None)."""
    s = np.zeros(len(b), dtype=np.int64)
    chosen: list[int] = []
    avail = np.ones(A.shape[1], dtype=bool)
    for _ in range(k):
        short = b - s
        if (short <= 0).all():
            break
        # deficit removed on rows still short, minus twice the slack used up on rows met with none to spare
        score = (short > 0).astype(np.float64) @ A + 2.0 * ((short == 0).astype(np.float64) @ np.minimum(A, 0))
        score[~avail] = -np.inf
        j = int(np.argmax(score))
        chosen.append(j)
        avail[j] = False
        s += A[:, j]
    return np.array(chosen, dtype=np.int64) if (s >= b).all() else None


def _popcount(codes: np.ndarray, m: int) -> np.ndarray:
    return ((codes[:, None] >> np.arange(m, dtype=np.int64)[None, :]) & 1).sum(1)


def _realise(A: np.ndarray, b: np.ndarray, k: int, deadline: float | None,
             lp_calls: list[int], max_nodes: int) -> tuple[SatResult, np.ndarray | None, np.ndarray | None]:
    """``(SAT, flip indices, None)``, ``(UNSAT, None, weights or None)`` or ``(UNKNOWN, ...)``.

    UNSAT with integer ``weights``: those rows alone are refuted at the root (a clause over
    them); UNSAT with None: the pattern as a whole was refuted by branch and bound.
    """
    useful = np.flatnonzero(np.any(A != 0, axis=0))  # a bit moving none of these neurons never helps
    A_u = A[:, useful].astype(np.float64)
    lo, hi = np.zeros(len(useful)), np.ones(len(useful))
    lp_calls[0] += 1
    feasible, f, y = _lp(A_u, b.astype(np.float64), k, lo, hi)
    if not feasible:
        w = _integer_weights(y)
        if _refutes(w, A, b, k):
            return SatResult.UNSAT, None, _shrink(w, A, b, k)
    # branch and bound over the bits: depth first, the fractional bit the LP likes most set first
    A_i = A[:, useful]
    idx_all = np.arange(len(useful))
    stack = [(np.zeros(0, np.int64), np.zeros(0, np.int64), f if feasible else None)]
    nodes = 0
    while stack:
        if deadline is not None and time.perf_counter() > deadline:
            return SatResult.UNKNOWN, None, None
        nodes += 1
        if nodes > max_nodes:
            return SatResult.UNKNOWN, None, None
        one, zero, f = stack.pop()
        if len(one) > k:
            continue
        if f is None:
            lo[:], hi[:] = 0, 1
            lo[one], hi[zero] = 1, 0
            lp_calls[0] += 1
            feasible, f, y = _lp(A_u, b.astype(np.float64), k, lo, hi)
            if not feasible:
                free = np.setdiff1d(idx_all, np.concatenate([one, zero]))
                if _refutes(_integer_weights(y), A_i, b, k, fixed1=one, free=free):
                    continue
                return SatResult.UNKNOWN, None, None  # LP and exact check disagree: no conclusion
        for cand in (np.flatnonzero(f > 0.5), np.argsort(-f, kind="stable")[:k]):
            if len(cand) <= k and np.all(A_i[:, cand].sum(1) >= b):
                return SatResult.SAT, useful[cand], None
        decided = np.zeros(len(useful), dtype=bool)
        decided[one] = decided[zero] = True
        frac = np.where(decided | (f >= 1 - 1e-6) | (f <= 1e-6), -1.0, f)
        j = int(np.argmax(frac))
        if frac[j] < 0:
            return SatResult.UNKNOWN, None, None  # an integral LP point that fails exactly: numerics
        stack.append((one, np.append(zero, j), None))
        stack.append((np.append(one, j), zero, None))
    return SatResult.UNSAT, None, None
