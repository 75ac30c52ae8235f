"""Exact inversion queries on an encoded BNN: inference, preimages, enumeration, minimal flips.

Every query has a time budget and answers SAT, UNSAT ("no input yields this label under these
constraints" -- an answer, not an error) or UNKNOWN with the time spent. Every input reported is
first re-checked by the PyTorch forward pass (and the exported integer net); a mismatch is a bug
in the encoding and raises instead of being reported.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pysat.formula import CNFPlus

from ._cardinality import unary_counter
from ._encode import Encoding
from ._model import BNN
from ._solve import BudgetedSolver, SatResult, _Budget

__all__ = ["InferenceResult", "Preimage", "RobustnessResult", "SatInverter", "candidate_hint", "local_search_candidate"]



@dataclass(frozen=True)
class InferenceResult:
    """The label the CNF gives an input; ``conflicts == 0`` and ``by_propagation`` when UP decided it."""

    label: int
    seconds: float
    by_propagation: bool
    conflicts: int = 0


@dataclass(frozen=True)
class Preimage:
    """Answer to "which input gets label ``label``?": ``bits`` is set only when ``status`` is SAT."""

    status: SatResult
    label: int
    bits: list[int] | None
    seconds: float
    conflicts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "label": self.label, "preimage": self.bits,
                "seconds": self.seconds, "conflicts": self.conflicts}


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


def candidate_hint(net: Any, candidates: np.ndarray, label: int, *, fixed: Mapping[int, int] | None = None,
                   near: Any = None) -> np.ndarray | None:
    """The candidate input (e.g. a training image) best suited as a phase hint for a query.

    Among ``candidates`` ``(m, n)`` that ``net`` labels ``label``, the one that disagrees least with
    the ``fixed`` bits and, as a tie-break, lies nearest to ``near``. ``None`` if none has the label.
    A hint only orders the search; answers stay exact (UNSAT is still a proof).
    """
    cand = np.asarray(candidates)
    cand = cand[net.predict(cand) == int(label)]
    if not len(cand):
        return None
    cost = np.zeros(len(cand), dtype=np.int64)
    for j, b in (fixed or {}).items():
        cost += (cand[:, int(j)] != int(b)).astype(np.int64) * (len(cand[0]) + 1)
    if near is not None:
        cost += (cand != np.asarray(near).reshape(1, -1)).sum(1)
    return cand[int(cost.argmin())]


def _deeper_layers(net: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Layers after the first as ``(signs, offset, bounds)`` so that counts = v @ signs + offset.

    ``sum_j [w_j > 0] v_j + [w_j < 0] (1 - v_j)`` is one float32 matmul plus the number of
    negative weights (exact for these small integer sums).
    """
    return [(((lits == 1).astype(np.float32) - (lits == -1).astype(np.float32)).T,
             (lits == -1).sum(1).astype(np.float32), bounds.astype(np.float32)) for lits, bounds in net.layers[1:]]


def _forward_from_counts(bounds1: np.ndarray, deeper: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                         counts1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Last hidden layer's bits and counts for a batch of layer-1 counts ``(m, H1)``."""
    counts = counts1
    v = (counts1 >= bounds1).astype(np.float32)
    for signs, offset, bounds in deeper:
        counts = v @ signs + offset
        v = (counts >= bounds).astype(np.float32)
    return v, counts


def _label_objective(head: np.ndarray, bounds: np.ndarray, label: int, v: np.ndarray,
                     counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(margin, distance)`` per row: ``margin >= 0`` iff the label is ``label`` (torch tie rule).

    ``margin`` is ``min_j score_label - score_j - [j < label]``; ``distance`` sums, over the last
    hidden neurons whose value the runner-up comparison wants changed, how far their counts are
    from the threshold ``bounds``: it grades the plateaus of the integer margin, so the search has
    a slope.
    """
    s = (2 * v - 1) @ head.T
    m = s[:, [label]] - s - (np.arange(head.shape[0]) < label)[None, :]
    m[:, label] = np.inf
    jstar = m.argmin(1)
    margin = m[np.arange(len(m)), jstar]
    want = head[label][None, :] - head[jstar]
    dist = np.where(want > 0, np.maximum(bounds - counts, 0), 0) + np.where(want < 0, np.maximum(counts - bounds + 1, 0), 0)
    return margin, dist.sum(1)


def local_search_candidate(net: Any, label: int, *, fixed: Mapping[int, int] | None = None, start: Any = None,
                           max_flips: int | None = None, time_s: float = 0.5, seed: int = 0,
                           tabu: int = 10, restart_steps: int = 200, max_steps: int | None = None) -> np.ndarray | None:
    """An input the integer net labels ``label``, by tabu local search on single-bit flips (no data).

    Starts from ``start`` (default: the all-zero input, a blank image: random starts on 784-input
    nets did not converge in 3 s, the blank one did in < 1 s for every label) and flips, at each
    step, the free bit that most increases the label margin (:func:`_label_objective`), sideways
    moves allowed, recently flipped bits tabu; restarts from random inputs after
    ``restart_steps``. ``fixed`` bits are never flipped; with ``max_flips`` the walk stays within
    that Hamming distance of ``start``. Returns ``None`` if nothing is found in ``time_s`` or
    ``max_steps`` flips (default ``20 * n_inputs``, which bounds the time lost on labels without
    a preimage): the search is incomplete, so it only supplies phase hints for the exact SAT query.
    """
    if not net.layers:
        return None
    n = net.n_inputs
    rng = np.random.default_rng(seed)
    lits0 = net.layers[0][0].astype(np.float32)
    pos, neg = (lits0 == 1).astype(np.float32), (lits0 == -1).astype(np.float32)
    bounds1 = net.layers[0][1].astype(np.float32)
    deeper = _deeper_layers(net)
    head = net.head.astype(np.float32)
    last_bounds = net.layers[-1][1].astype(np.float32)[None, :]
    free = np.ones(n, dtype=bool)
    x0 = np.zeros(n, dtype=np.float32) if start is None else np.asarray(start, dtype=np.float32).reshape(-1).copy()
    for j, b in (fixed or {}).items():
        x0[int(j)] = int(b)
        free[int(j)] = False
    big = float(n * sum(len(b) for _, b in net.layers) + 1)
    deadline = time.perf_counter() + time_s
    x = x0.copy()
    last = np.full(n, -(10 ** 9))
    step = 0
    counts = x @ pos.T + (1 - x) @ neg.T
    max_steps = 20 * n if max_steps is None else int(max_steps)
    while time.perf_counter() < deadline and step < max_steps:
        v, cl = _forward_from_counts(bounds1, deeper, counts[None])
        if _label_objective(head, last_bounds, label, v, cl)[0][0] >= 0:
            return x.astype(np.int8)
        if step and step % restart_steps == 0:
            x = np.where(free, rng.integers(0, 2, n), x0).astype(np.float32) if max_flips is None else x0.copy()
            counts = x @ pos.T + (1 - x) @ neg.T
            last[:] = -(10 ** 9)
        neighbours = counts[None, :] + (1 - 2 * x)[:, None] * lits0.T  # layer-1 counts after flipping bit j
        v, cl = _forward_from_counts(bounds1, deeper, neighbours)
        margin, dist = _label_objective(head, last_bounds, label, v, cl)
        obj = margin.astype(np.float64) * big - dist + rng.random(n) * 0.5
        movable = free.copy()
        if max_flips is not None:  # undoing a flip is always allowed; a new one only below the limit
            flipped = x != x0
            movable &= flipped | (flipped.sum() < max_flips)
        if not movable.any():
            return None
        allowed = movable & (step - last > tabu)
        if not allowed.any():
            allowed = movable
        obj[~allowed] = -np.inf
        j = int(obj.argmax())
        x[j] = 1 - x[j]
        if margin[j] >= 0:
            return x.astype(np.int8)
        counts = neighbours[j]
        last[j] = step
        step += 1
    return None


class SatInverter:
    """Exact queries on one encoded BNN, with one incremental solver kept between calls.

    Parameters
    ----------
    encoding : Encoding
        From :func:`encode`.
    model : BNN or None
        The PyTorch network the encoding came from; every reported input is checked against its
        forward pass (always also against ``encoding.net``).
    solver : str
        A name from :func:`list_solvers` (``minicard``/``gluecard4`` for the native encoding).
    time_s : float or None
        Budget per query, in seconds.
    search_s : float
        Seconds of :func:`local_search_candidate` per :meth:`preimage` call that has no
        ``phases``, whose result becomes the phase hint (0 disables). Without it, CDCL on the
        bare encoding missed half the digits labels in 2 s (tens of thousands of conflicts
        deciding hidden and counter variables); the search needs no data and the SAT call stays
        exact (UNSAT is still a proof).

    Examples
    --------
    >>> import numpy as np
    >>> from netinvert.bnn import IntegerBNN, SatInverter, encode
    >>> net = IntegerBNN(layers=((np.array([[1, 1]], np.int8), np.array([2])),),
    ...                  head=np.array([[-1], [1]], np.int8))
    >>> with SatInverter(encode(net), time_s=5) as inv:
    ...     inv.preimage(1).bits
    [1, 1]
    """

    def __init__(self, encoding: Encoding, *, model: BNN | None = None, solver: str = "glucose4",
                 time_s: float | None = 10.0, search_s: float = 1.0) -> None:
        if search_s < 0:
            raise ValueError(f"The 'search_s' parameter of SatInverter must be a float in [0, inf). Got {search_s} instead.")
        self.search_s = float(search_s)
        self.encoding = encoding
        self.model = model
        self.solver = solver
        self.time_s = time_s
        self._bs: BudgetedSolver | None = None

    def __enter__(self) -> SatInverter:
        self._bs = BudgetedSolver(self.encoding, solver=self.solver, time_s=self.time_s).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._bs is not None:
            self._bs.close()
            self._bs = None

    @property
    def _solver(self) -> BudgetedSolver:
        if self._bs is None:
            raise ValueError("SatInverter must be used in a 'with' block (or entered) before querying.")
        return self._bs

    def _check_label(self, label: int) -> int:
        k = self.encoding.net.n_classes
        if not 0 <= int(label) < k:
            raise ValueError(f"The 'label' parameter of SatInverter must be an int in [0, {k - 1}]. Got {label} instead.")
        return int(label)

    def _bits(self, bits: Any, name: str) -> list[int]:
        arr = np.asarray(bits).reshape(-1)
        n = self.encoding.net.n_inputs
        if arr.size != n or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"The '{name}' parameter of SatInverter must hold {n} bits in {{0, 1}}. Got shape {arr.shape} instead.")
        return [int(b) for b in arr]

    def reference_label(self, bits: Sequence[int]) -> int:
        """Label of ``bits`` by PyTorch (checked equal to the integer net's)."""
        x = np.asarray(bits, dtype=np.int64)[None]
        ref = int(self.encoding.net.predict(x)[0])
        if self.model is not None:
            torch_label = int(self.model.predict(torch.as_tensor(x)).item())
            if torch_label != ref:
                raise RuntimeError(f"Exported net and PyTorch disagree on an input ({ref} vs {torch_label}); re-export the run.")
        return ref

    def _verified(self, bits: list[int], want: int | None = None, avoid: int | None = None) -> int:
        got = self.reference_label(bits)
        if (want is not None and got != want) or (avoid is not None and got == avoid):
            raise RuntimeError(f"The SAT answer gives label {got} in PyTorch (wanted {want}, avoid {avoid}): encoding bug.")
        return got

    def infer(self, bits: Any) -> InferenceResult:
        """Label of ``bits`` by the CNF: unit propagation first, a solver call if it does not decide.

        The native path skips the propagation pass (Minicard's constraints never decide the output
        by it) and its solver call gets the integer net's values of every variable as phases, so a
        model is found without a conflict; what remains is Minicard propagating its cardinality
        constraints (Fashion 784-100-100-10: median 0.053 s instead of 0.065 s, fresh inputs,
        one process, load 3 on 2 cores). The label is still
        read from the solver's model of the CNF, never from the net. Phases could hide a CNF that
        also admits another label, so the tests prove on tiny nets that, with every input fixed,
        the CNF with any other output is UNSAT (and clausal encodings decide it by propagation).
        """
        x = self._bits(bits, "bits")
        assumptions = self.encoding.input_assumptions(x)
        t0 = time.perf_counter()
        if self._solver.in_process and not self.encoding.native:  # native constraints never decide it by propagation
            ok, fixed = self._solver.propagate(assumptions)
            labels = [k for k, y in enumerate(self.encoding.outputs) if y in fixed]
            if ok and len(labels) == 1:
                return InferenceResult(labels[0], time.perf_counter() - t0, True)
        out = self._solver.solve(assumptions, phases=self._full_phases(x))
        if out.status is not SatResult.SAT:
            raise RuntimeError(f"Inference returned {out.status.value}: the encoding must accept every input.")
        model = set(out.model or ())
        labels = [k for k, y in enumerate(self.encoding.outputs) if y in model]
        return InferenceResult(labels[0], time.perf_counter() - t0, False, out.conflicts)

    def _assumptions(self, label: int | None, fixed: Mapping[int, int] | None,
                     hidden: Mapping[tuple[int, int], int] | None) -> list[int]:
        enc = self.encoding
        out = [enc.outputs[label]] if label is not None else []
        for j, b in (fixed or {}).items():
            if not 0 <= int(j) < len(enc.inputs):
                raise ValueError(f"Fixed pixel index {j} is out of range [0, {len(enc.inputs) - 1}].")
            out.append(enc.inputs[int(j)] if int(b) else -enc.inputs[int(j)])
        for (layer, i), b in (hidden or {}).items():
            v = enc.hidden[int(layer)][int(i)]
            out.append(v if int(b) else -v)
        return out

    def _full_phases(self, bits: list[int]) -> list[int]:
        """Polarities of *every* variable under the input ``bits`` (inputs, counters, hidden, outputs).

        Hinting only the inputs is not enough (METHODS.md section 5): CDCL decides auxiliary
        variables first and their default polarity contradicts the hint. With the whole
        propagated assignment as phases, a satisfying candidate is found without a conflict and
        a near-solution steers the search towards it.
        """
        enc = self.encoding
        lits = set(enc.input_assumptions(bits))
        # hidden, comparison and output values from the integer net: the native encoding has no
        # counters, and propagation alone does not reach its hidden variables
        x = np.asarray(bits, dtype=np.int64)[None]
        for layer_vars, values in zip(enc.hidden, enc.net.hidden(x)):
            lits.update(v if b else -v for v, b in zip(layer_vars, values[0]))
        scores = enc.net.scores(x)[0]
        label = int(scores.argmax())
        lits.update(y if k == label else -y for k, y in enumerate(enc.outputs))
        for a in range(len(scores)):
            for b in range(a + 1, len(scores)):
                v = enc.pool.id(("cmp", a, b))
                lits.add(v if scores[a] >= scores[b] else -v)
        if self._solver.in_process and not enc.native:
            ok, fixed = self._solver.propagate(sorted(lits, key=abs))
            if ok:
                lits |= fixed
        return sorted(lits, key=abs)

    def _ball(self, near: Any, max_flips: int) -> list[int]:
        """Assumptions restricting inputs to Hamming distance <= ``max_flips`` of ``near``."""
        x = self._bits(near, "near")
        if max_flips < 0:
            raise ValueError(f"The 'max_flips' parameter must be an int in [0, inf). Got {max_flips} instead.")
        if max_flips >= len(x):
            return []
        diff = [-v if b else v for v, b in zip(self.encoding.inputs, x)]  # true iff bit j is flipped
        outs = self._counter(diff, max_flips + 1)
        return [-outs[max_flips]]

    def _counter(self, lits: list[int], k: int) -> list[int]:
        side = CNFPlus()
        outs = unary_counter(lits, k, self.encoding.pool, side)
        for c in side.clauses:  # definitional: always satisfiable, safe to keep
            self._solver.add_clause(c)
        return outs

    def preimage(self, label: int, *, fixed: Mapping[int, int] | None = None, near: Any = None,
                 max_flips: int | None = None, hidden: Mapping[tuple[int, int], int] | None = None,
                 phases: Any = None, time_s: float | None = -1.0) -> Preimage:
        """An input the network labels ``label``, under optional constraints.

        Parameters
        ----------
        label : int
        fixed : mapping of int to {0, 1}
            Input bits held fixed (complete a partial image).
        near, max_flips : bits, int
            Stay within Hamming distance ``max_flips`` of ``near``.
        hidden : mapping of (layer, neuron) to {0, 1}
            Required hidden-neuron values.
        phases : bits
            A candidate input used as the solver's preferred polarities (a hint; exactness kept).
            Without one, ``search_s`` seconds of local search on the integer net supply it.
        time_s : float or None
            Budget for this call (default: the constructor's), local search included.
        """
        label = self._check_label(label)
        budget = _Budget(self.time_s if time_s == -1.0 else time_s)
        assumptions = self._assumptions(label, fixed, hidden)
        if near is not None and max_flips is not None:
            assumptions += self._ball(near, int(max_flips))
        if phases is None and self.search_s > 0:
            left = budget.left()
            phases = local_search_candidate(
                self.encoding.net, label, fixed=fixed, start=None if near is None else self._bits(near, "near"),
                max_flips=None if near is None else max_flips,
                time_s=self.search_s if left is None else min(self.search_s, left / 2))
        phase_lits = self._full_phases(self._bits(phases, "phases")) if phases is not None else None
        out = self._solver.solve(assumptions, time_s=budget.left(), phases=phase_lits)
        bits = None
        if out.status is SatResult.SAT:
            bits = self.encoding.decode_inputs(out.model or [])
            self._verified(bits, want=label)
        return Preimage(out.status, label, bits, time.perf_counter() - budget.t0, out.conflicts)

    def _next_candidate(self, label: int, found: list[list[int]], seen: set[tuple[int, ...]],
                        fixed: Mapping[int, int] | None, near: Any, max_flips: int | None,
                        left: float | None) -> list[int] | None:
        """A phase hint for the next enumeration step: an unlisted one-flip neighbour of the last
        preimage with the same label (one batched forward pass), else a fresh local search."""
        net = self.encoding.net
        if found:
            last = np.asarray(found[-1], dtype=np.int64)
            nb = np.repeat(last[None], len(last), 0)
            idx = np.arange(len(last))
            nb[idx, idx] ^= 1
            keep = net.predict(nb) == label
            for j, b in (fixed or {}).items():
                keep &= nb[:, int(j)] == int(b)
            if near is not None and max_flips is not None:
                keep &= (nb != np.asarray(self._bits(near, "near"))[None]).sum(1) <= int(max_flips)
            for row in nb[keep]:
                if tuple(int(b) for b in row) not in seen:
                    return [int(b) for b in row]
        cand = local_search_candidate(
            net, label, fixed=fixed, start=None if near is None else self._bits(near, "near"),
            max_flips=None if near is None else max_flips, seed=len(found),
            time_s=self.search_s if left is None else min(self.search_s, left / 2))
        return None if cand is None else [int(b) for b in cand]

    def preimages(self, label: int, *, limit: int, fixed: Mapping[int, int] | None = None, near: Any = None,
                  max_flips: int | None = None, hidden: Mapping[tuple[int, int], int] | None = None,
                  time_s: float | None = -1.0) -> tuple[list[list[int]], SatResult, float]:
        """Up to ``limit`` distinct preimages of ``label`` (blocking clauses on the inputs only).

        Constraints are those of :meth:`preimage`. Each step takes its phase hint from an unlisted
        one-flip neighbour of the last preimage that keeps the label, else from a local search. The blocking clauses are guarded by a fresh
        activation literal that is switched off afterwards, so later queries on this inverter see
        the original formula.

        Returns ``(inputs, status, seconds)``: ``status`` is UNSAT when every preimage was listed,
        SAT when ``limit`` was reached, UNKNOWN when the budget ran out.
        """
        label = self._check_label(label)
        budget = _Budget(self.time_s if time_s == -1.0 else time_s)
        assumptions = self._assumptions(label, fixed, hidden)
        if near is not None and max_flips is not None:
            assumptions += self._ball(near, int(max_flips))
        act = self._solver.new_var()
        found: list[list[int]] = []
        seen: set[tuple[int, ...]] = set()
        status = SatResult.SAT
        try:
            while len(found) < limit:
                left = budget.left()
                if left is not None and left <= 0:
                    status = SatResult.UNKNOWN
                    break
                phase_lits = None
                if self.search_s > 0:
                    cand = self._next_candidate(label, found, seen, fixed, near, max_flips, left)
                    phase_lits = None if cand is None else self._full_phases(cand)
                out = self._solver.solve([*assumptions, act], time_s=budget.left(), phases=phase_lits)
                if out.status is not SatResult.SAT:
                    status = out.status
                    break
                bits = self.encoding.decode_inputs(out.model or [])
                self._verified(bits, want=label)
                found.append(bits)
                seen.add(tuple(bits))
                self._solver.add_clause([-act, *[-l for l in self.encoding.input_assumptions(bits)]])
        finally:
            self._solver.add_clause([-act])
        return found, status, time.perf_counter() - budget.t0

    def _flip_candidate(self, x: list[int], label: int, k: int, left: float | None) -> list[int] | None:
        """An input within ``k`` flips of ``x`` that the integer net labels otherwise, by local search
        towards each other label (highest score first), ``search_s`` seconds in all; or None."""
        net = self.encoding.net
        total = self.search_s if left is None else min(self.search_s, left / 2)
        if total <= 0:
            return None
        scores = net.scores(np.asarray(x)[None])[0]
        others = [int(c) for c in np.argsort(-scores, kind="stable") if c != label]
        for c in others:
            cand = local_search_candidate(net, c, start=x, max_flips=k, time_s=total / len(others))
            if cand is not None:
                return [int(b) for b in cand]
        return None

    def min_flips(self, bits: Any, *, max_k: int | None = None, time_s: float | None = -1.0,
                  hint: bool = True, enumerate_up_to: int = 0, bounds: bool = True,
                  max_free: int = 60) -> RobustnessResult:
        """Least number of bit flips of ``bits`` that changes the label (incremental over ``k``).

        ``k = 1, 2, ...`` is tried in turn with one shared unary counter (bounds by assumption,
        extended when ``k`` outgrows it); the first SAT ``k`` is minimal -- *certified* when every
        smaller ``k`` was proved UNSAT. ``k = 0`` is ruled out by the forward pass itself.

        Parameters
        ----------
        bits : sequence of {0, 1}
        max_k : int or None
            Largest number of flips tried.
        time_s : float or None
            Budget for the whole search.
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
            ``k`` exactly (``"by": "patterns"``) unless its branch and bound keeps too many
            patterns open; else the SAT call gets the fixed neurons as
            unit assumptions (implied by the flip bound, so every answer stays the same), after
            ``search_s`` seconds of :func:`local_search_candidate` for a ``k``-flip input of each
            other label (``"by": "search"`` when it finds one; checked like every answer).
        max_free : int
            Most free first-layer neurons for the pattern search (patterns are coded in 64-bit
            integers, so at most 62); 0 sends every ``k`` the bounds leave open to the SAT call.
        """
        from math import comb

        from ._robust import exhaustive_flip_search, flip_bounds, pattern_flip_search

        x = self._bits(bits, "bits")
        label = self.reference_label(x)
        n = len(x)
        kmax = n if max_k is None else min(int(max_k), n)
        budget = _Budget(self.time_s if time_s == -1.0 else time_s)
        outs: list[int] | None = None
        phases: list[int] | None = None
        steps: list[dict[str, Any]] = []
        certified = True
        lower = 1
        status = SatResult.UNSAT

        def found(flipped: list[int]) -> RobustnessResult:
            new = self._verified(flipped, avoid=label)
            dist = int(sum(a != b for a, b in zip(flipped, x)))
            return RobustnessResult(SatResult.SAT, label, dist, certified, lower, flipped, new,
                                    time.perf_counter() - budget.t0, steps)

        for k in range(1, kmax + 1):
            left = budget.left()
            if left is not None and left <= 0:
                status = SatResult.UNKNOWN
                break
            if comb(n, k) <= enumerate_up_to:
                t0 = time.perf_counter()
                fb = flip_bounds(self.encoding.net, np.asarray(x), k) if bounds else None
                idx, complete = exhaustive_flip_search(self.encoding.net, np.asarray(x), k, bounds=fb, max_free=max_free,
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
                fb = flip_bounds(self.encoding.net, np.asarray(x), k)
                info = {"fixed": fb.n_fixed, "free": fb.n_free}
                if fb.certified:
                    steps.append({"k": k, "status": SatResult.UNSAT.value, "by": "bounds", **info,
                                  "seconds": time.perf_counter() - t0})
                    if certified:
                        lower = k + 1
                    continue
                # a third of what is left (at least 1 s): when its patterns blow up, the local
                # search and SAT call below still get time
                ps = pattern_flip_search(self.encoding.net, np.asarray(x), k, bounds=fb, max_free=max_free,
                                         deadline=None if left is None else t0 + min(left, max(1.0, left / 3)))
                out_of_time = left is not None and budget.left() <= 0
                if ps.complete or out_of_time:
                    st = SatResult.SAT if ps.indices is not None else SatResult.UNSAT if ps.complete else SatResult.UNKNOWN
                    steps.append({"k": k, "status": st.value, "by": "patterns", **info, "n_bad": ps.n_bad,
                                  "nodes": ps.nodes, "seconds": time.perf_counter() - t0})
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
                cand = self._flip_candidate(x, label, k, budget.left())
                if cand is not None:
                    steps.append({"k": k, "status": SatResult.SAT.value, "by": "search", **info,
                                  "seconds": time.perf_counter() - t0})
                    return found(cand)
                for layer_vars, values, fixed in zip(self.encoding.hidden, fb.values, fb.fixed):
                    fixed_hidden += [v if b else -v for v, b, f in zip(layer_vars, values, fixed) if f]
            if outs is None or (k >= len(outs) and len(outs) < min(kmax + 1, n)):
                # counted only as far as needed soon (a larger k builds a longer one): a counter to
                # n on 784 inputs is 629k clauses and took 1.7 s to build, overrunning the budget
                diff = [-v if b else v for v, b in zip(self.encoding.inputs, x)]  # true iff bit j flips
                outs = self._counter(diff, min(kmax + 1, n, 2 * k + 8))
                if phases is None and hint:
                    phases = self._full_phases(x)
            assumptions = [-self.encoding.outputs[label]] + ([-outs[k]] if k < len(outs) else []) + fixed_hidden
            out = self._solver.solve(assumptions, time_s=budget.left(), phases=phases)
            steps.append({"k": k, "status": out.status.value, "by": "sat", "seconds": out.seconds,
                          **({"fixed": len(fixed_hidden)} if bounds else {})})
            if out.status is SatResult.SAT:
                return found(self.encoding.decode_inputs(out.model or []))
            if out.status is SatResult.UNKNOWN:
                certified = False
                status = SatResult.UNKNOWN
                continue  # a larger k may still be found quickly; it is then not certified minimal
            if certified:
                lower = k + 1
        return RobustnessResult(status, label, None, False, lower, None, None, time.perf_counter() - budget.t0, steps)
