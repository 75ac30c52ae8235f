"""Least number of input-bit flips that changes a BNN's label, certified minimal.

``k = 1, 2, ...`` is decided in turn by the cheapest exact method that applies: listing every
``k``-flip neighbour on the integer net, interval bounds over the Hamming ball (:func:`flip_bounds`),
the branch and bound over label-changing patterns (:func:`pattern_flip_search`), a local search for a
witness, and finally the SAT solver of a :class:`SatInverter` with a shared unary counter. Used through
:meth:`SatInverter.min_flips`.
"""

from __future__ import annotations

import time
from math import comb
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._local_search import local_search_candidate
from ._robust import exhaustive_flip_search, flip_bounds, pattern_flip_search
from ._solve import SatResult, _Budget

if TYPE_CHECKING:
    from ._invert import SatInverter

__all__ = ["RobustnessResult", "min_flips"]


@dataclass(frozen=True)
class RobustnessResult:
    """Least number of flipped input bits that changes the label.

    ``k`` is the flips of ``flipped`` (None if no change was found within ``max_k``/the budget);
    ``certified`` means every smaller ``k`` was proved UNSAT, so ``k`` is minimal; ``lower_bound``
    is the least ``k`` not ruled out.
    """

    status: SatResult
    label: int
    k: int | None
    certified: bool
    lower_bound: int
    flipped: list[int] | None
    new_label: int | None
    seconds: float
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "label": self.label, "k": self.k, "certified": self.certified,
                "lower_bound": self.lower_bound, "flipped": self.flipped, "new_label": self.new_label,
                "seconds": self.seconds, "steps": self.steps}



def _flip_candidate(inv: SatInverter, x: list[int], label: int, k: int, left: float | None) -> list[int] | None:
    """An input within ``k`` flips of ``x`` that the integer net labels otherwise, by local search
    towards each other label (highest score first), ``search_s`` seconds in all; or None."""
    net = inv.encoding.net
    total = inv.search_s if left is None else min(inv.search_s, left / 2)
    if total <= 0:
        return None
    scores = net.scores(np.asarray(x)[None])[0]
    others = [int(c) for c in np.argsort(-scores, kind="stable") if c != label]
    for c in others:
        cand = local_search_candidate(net, c, start=x, max_flips=k, time_s=total / len(others))
        if cand is not None:
            return [int(b) for b in cand]
    return None


def min_flips(inv: SatInverter, bits: Any, *, max_k: int | None = None, time_s: float | None = None,
              hint: bool = True, enumerate_up_to: int = 0, bounds: bool = True,
              max_free: int = 60) -> RobustnessResult:
    """Least number of bit flips of ``bits`` that changes the label (incremental over ``k``).

    ``k = 1, 2, ...`` is tried in turn with one shared unary counter (bounds by assumption,
    extended when ``k`` outgrows it); the first SAT ``k`` is minimal -- *certified* when every
    smaller ``k`` was proved UNSAT. ``k = 0`` is ruled out by the forward pass itself.

    Parameters
    ----------
    inv : SatInverter
        An entered inverter; its solver, ``search_s`` and budget are used.
    bits : sequence of {0, 1}
    max_k : int or None
        Largest number of flips tried.
    time_s : float or None
        Budget for the whole search (``None``: the inverter's ``time_s``; ``math.inf``: unlimited).
    hint : bool
        Use the full assignment of ``bits`` as phases (a nearby solution differs in few variables).
    enumerate_up_to : int
        For each ``k`` with ``C(n, k) <= enumerate_up_to``, list every ``k``-flip neighbour on
        the integer net instead of calling the solver (an equally exact certificate, much faster
        for small ``k``; steps record ``"by": "enumeration"``; with ``bounds`` each neighbour
        is checked against the free neurons' label-changing patterns instead of a forward
        pass). 0 (default): no listing.
    bounds : bool
        For each ``k`` not listed, first prove hidden neurons constant over the Hamming ball
        by :func:`flip_bounds` (steps record ``"fixed"``, the number proved, and ``"free"``):
        if that already fixes the label, ``k`` is ruled out (``"by": "bounds"``); else, with
        at most ``max_free`` free first-layer neurons, :func:`pattern_flip_search` decides
        ``k`` exactly (``"by": "patterns"``; on two hidden layers a beam dive looks for a witness
        first; each label-changing pattern refuted by an exact
        LP certificate or reached by a flip set, :func:`~netinvert.bnn._pattern_sat.realise_patterns`)
        unless its branch and bound keeps more than 2^22 patterns open (2^20 unless the net has two
        hidden layers) or the budget ends; else
        the SAT call gets the fixed neurons as
        unit assumptions (implied by the flip bound, so every answer stays the same), after
        ``search_s`` seconds of :func:`local_search_candidate` for a ``k``-flip input of each
        other label (``"by": "search"`` when it finds one; checked like every answer).
    max_free : int
        Most free first-layer neurons for the pattern search (patterns are coded in 64-bit
        integers, so at most 62); 0 sends every ``k`` the bounds leave open to the SAT call.
    """

    x = inv._bits(bits, "bits")
    label = inv.reference_label(x)
    # the flip bounds and the pattern search reason about hidden neurons: a net without a hidden
    # layer (a legal BNN(n, (), k)) goes straight to listing and the SAT call
    bounds = bool(bounds) and bool(inv.encoding.net.layers)
    n = len(x)
    kmax = n if max_k is None else min(int(max_k), n)
    budget = _Budget(inv._budget(time_s))
    outs: list[int] | None = None
    phases: list[int] | None = None
    steps: list[dict[str, Any]] = []
    certified = True
    lower = 1
    status = SatResult.UNSAT

    def found(flipped: list[int]) -> RobustnessResult:
        new = inv._verified(flipped, avoid=label)
        dist = int(sum(a != b for a, b in zip(flipped, x)))
        return RobustnessResult(SatResult.SAT, label, dist, certified, lower, flipped, new,
                                time.perf_counter() - budget.t0, steps)

    for k in range(1, kmax + 1):
        left = budget.left()
        if left is not None and left <= 0:
            status = SatResult.UNKNOWN
            break
        if inv.encoding.net.layers and comb(n, k) <= enumerate_up_to:
            t0 = time.perf_counter()
            fb = flip_bounds(inv.encoding.net, np.asarray(x), k) if bounds else None
            idx, complete = exhaustive_flip_search(inv.encoding.net, np.asarray(x), k, bounds=fb, max_free=max_free,
                                                   deadline=None if left is None else t0 + left)
            st = SatResult.SAT if idx is not None else SatResult.UNSAT if complete else SatResult.UNKNOWN
            steps.append({"k": k, "status": st.value, "by": "enumeration", "seconds": time.perf_counter() - t0,
                          **({"fixed": fb.n_fixed, "free": fb.n_free} if fb is not None else {})})
            if st is SatResult.UNKNOWN:
                status = SatResult.UNKNOWN
                break
            if idx is not None:
                flipped = list(x)
                for j in idx:
                    flipped[int(j)] = 1 - flipped[int(j)]
                return found(flipped)
            if certified:
                lower = k + 1
            continue
        fixed_hidden: list[int] = []
        if bounds:
            t0 = time.perf_counter()
            fb = flip_bounds(inv.encoding.net, np.asarray(x), k)
            info = {"fixed": fb.n_fixed, "free": fb.n_free}
            if fb.certified:
                steps.append({"k": k, "status": SatResult.UNSAT.value, "by": "bounds", **info,
                              "seconds": time.perf_counter() - t0})
                if certified:
                    lower = k + 1
                continue
            # nine tenths of what is left: with the linear step over the flips (_pattern_sat) it
            # decides k = 8-10 on 784-input images where the SAT call below decided nothing in 5 s,
            # so it gets most of the budget; the local search and SAT call keep the rest
            # open partial patterns: with two hidden layers up to 2^22 (int16 counts in two buffers,
            # at most 1.7 GB at 100 second-layer neurons; images 3 and 11 of the dense 784-input net
            # peak at 0.55M and 1.7M), else 2^20 (float32, about 0.4 GB)
            ps = pattern_flip_search(inv.encoding.net, np.asarray(x), k, bounds=fb, max_free=max_free,
                                     max_states=1 << (22 if len(inv.encoding.net.layers) == 2 else 20),
                                     deadline=None if left is None else t0 + 0.9 * left)
            out_of_time = left is not None and budget.left() <= 0
            if ps.complete or out_of_time:
                st = SatResult.SAT if ps.indices is not None else SatResult.UNSAT if ps.complete else SatResult.UNKNOWN
                steps.append({"k": k, "status": st.value, "by": "patterns", **info, "n_bad": ps.n_bad,
                              "nodes": ps.nodes, **({"dive": True} if ps.by_dive else {}),
                              "seconds": time.perf_counter() - t0})
                if st is SatResult.UNKNOWN:
                    status = SatResult.UNKNOWN
                    break
                if ps.indices is not None:
                    flipped = list(x)
                    for j in ps.indices:
                        flipped[int(j)] = 1 - flipped[int(j)]
                    return found(flipped)
                if certified:
                    lower = k + 1
                continue
            if ps.n_free <= max_free:  # it ran, and gave up: too many open patterns
                steps.append({"k": k, "status": SatResult.UNKNOWN.value, "by": "patterns", **info,
                              "n_bad": ps.n_bad, "nodes": ps.nodes, "seconds": time.perf_counter() - t0})
            t0 = time.perf_counter()
            cand = _flip_candidate(inv, x, label, k, budget.left())
            if cand is not None:
                steps.append({"k": k, "status": SatResult.SAT.value, "by": "search", **info,
                              "seconds": time.perf_counter() - t0})
                return found(cand)
            for layer_vars, values, fixed in zip(inv.encoding.hidden, fb.values, fb.fixed):
                fixed_hidden += [v if b else -v for v, b, f in zip(layer_vars, values, fixed) if f]
        if outs is None or (k >= len(outs) and len(outs) < min(kmax + 1, n)):
            # counted only as far as needed soon (a larger k builds a longer one): a counter to
            # n on 784 inputs is 629k clauses and took 1.7 s to build, overrunning the budget
            diff = [-v if b else v for v, b in zip(inv.encoding.inputs, x)]  # true iff bit j flips
            outs = inv._counter(diff, min(kmax + 1, n, 2 * k + 8))
            if phases is None and hint:
                phases = inv._full_phases(x)
        assumptions = [-inv.encoding.outputs[label]] + ([-outs[k]] if k < len(outs) else []) + fixed_hidden
        out = inv._solver.solve(assumptions, time_s=budget.left(), phases=phases)
        steps.append({"k": k, "status": out.status.value, "by": "sat", "seconds": out.seconds,
                      **({"fixed": len(fixed_hidden)} if bounds else {})})
        if out.status is SatResult.SAT:
            return found(inv.encoding.decode_inputs(out.model or []))
        if out.status is SatResult.UNKNOWN:
            certified = False
            status = SatResult.UNKNOWN
            continue  # a larger k may still be found quickly; it is then not certified minimal
        if certified:
            lower = k + 1
    return RobustnessResult(status, label, None, False, lower, None, None, time.perf_counter() - budget.t0, steps)
