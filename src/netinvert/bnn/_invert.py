"""Exact inversion queries on an encoded BNN: inference, preimages, enumeration, minimal flips.

Every query has a time budget and answers SAT, UNSAT ("no input yields this label under these
constraints" -- an answer, not an error) or UNKNOWN with the time spent. Every input reported is
first re-checked by the PyTorch forward pass (and the exported integer net); a mismatch is a bug
in the encoding and raises instead of being reported.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pysat.formula import CNFPlus

from ._cardinality import unary_counter
from ._encode import Encoding
from ._local_search import local_search_candidate
from ._min_flips import RobustnessResult, min_flips
from ._model import BNN
from ._solve import BudgetedSolver, SatResult, _Budget

__all__ = ["InferenceResult", "InferenceSummary", "Preimage", "Preimages", "SatInverter", "infer_all"]


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
class Preimages:
    """Distinct preimages of ``label`` listed by :meth:`SatInverter.preimages`.

    ``status`` is UNSAT when every preimage was listed (``complete``), SAT when ``limit`` was
    reached first, UNKNOWN when the budget ran out.
    """

    status: SatResult
    label: int
    inputs: tuple[tuple[int, ...], ...]
    seconds: float

    @property
    def complete(self) -> bool:
        """True when ``inputs`` are *all* the preimages (the last call was UNSAT)."""
        return self.status is SatResult.UNSAT

    def __len__(self) -> int:
        return len(self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "label": self.label, "n_found": len(self.inputs),
                "complete": self.complete, "seconds": self.seconds, "preimages": [list(x) for x in self.inputs]}


@dataclass(frozen=True)
class InferenceSummary:
    """SAT inference of many inputs compared with a reference labelling (:func:`infer_all`)."""

    n: int
    agreement: float
    by_propagation: int
    conflicts: int
    median_seconds: float | None
    max_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
        A name from :func:`list_solvers` (``minicard``/``gluecard4`` for the native encoding), or
        ``"auto"``: :func:`default_solver` (``minicard`` for native, else ``glucose4``).
    time_s : float or None
        Budget per query, in seconds (``None``: unlimited). Each query's own ``time_s=None``
        means this budget.
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

    def __init__(self, encoding: Encoding, *, model: BNN | None = None, solver: str = "auto",
                 time_s: float | None = 10.0, search_s: float = 1.0) -> None:
        if search_s < 0:
            raise ValueError(f"The 'search_s' parameter of SatInverter must be a float in [0, inf). Got {search_s} instead.")
        self.search_s = float(search_s)
        self.encoding = encoding
        self.model = model
        self.solver = solver
        self.time_s = time_s
        self._bs: BudgetedSolver | None = None
        self._level0_labels: list[int] | None = None

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
    def solver_name(self) -> str:
        """The solver actually used (``"auto"`` resolved, see :func:`default_solver`)."""
        from ._solve import resolve_solver

        return resolve_solver(self.solver, self.encoding)

    def _budget(self, time_s: float | None) -> float | None:
        """A query's budget: its own ``time_s``, else the constructor's (``inf``: unlimited)."""
        from ._solve import budget_seconds

        return budget_seconds(self.time_s if time_s is None else time_s)

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
            labels = [k for k, y in enumerate(self.encoding.outputs) if y in fixed or k in self._constant_labels()]
            if ok and len(labels) == 1:
                return InferenceResult(labels[0], time.perf_counter() - t0, True)
        out = self._solver.solve(assumptions, phases=self._full_phases(x))
        if out.status is not SatResult.SAT:
            raise RuntimeError(f"Inference returned {out.status.value}: the encoding must accept every input.")
        model = set(out.model or ())
        labels = [k for k, y in enumerate(self.encoding.outputs) if y in model]
        return InferenceResult(labels[0], time.perf_counter() - t0, False, out.conflicts)

    def _constant_labels(self) -> list[int]:
        """Labels true at decision level 0 (a net whose label is constant): ``propagate`` does not
        report level-0 implications that are not unit clauses, so each output is tested once by
        propagating its negation to a conflict."""
        if self._level0_labels is None:
            outs = self.encoding.outputs
            self._level0_labels = [k for k, y in enumerate(outs) if not self._solver.propagate([-y])[0]]
        return self._level0_labels

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
        outs = unary_counter(lits, k, self._solver.pool, side)
        for c in side.clauses:  # definitional: always satisfiable, safe to keep
            self._solver.add_clause(c)
        return outs

    def preimage(self, label: int, *, fixed: Mapping[int, int] | None = None, near: Any = None,
                 max_flips: int | None = None, hidden: Mapping[tuple[int, int], int] | None = None,
                 phases: Any = None, time_s: float | None = None) -> Preimage:
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
            Budget for this call, local search included (``None``: the constructor's;
            ``math.inf``: unlimited).

        Returns
        -------
        Preimage
        """
        label = self._check_label(label)
        budget = _Budget(self._budget(time_s))
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
                  time_s: float | None = None) -> Preimages:
        """Up to ``limit`` distinct preimages of ``label`` (blocking clauses on the inputs only).

        Constraints are those of :meth:`preimage`. Each step takes its phase hint from an unlisted
        one-flip neighbour of the last preimage that keeps the label, else from a local search. The blocking clauses are guarded by a fresh
        activation literal that is switched off afterwards, so later queries on this inverter see
        the original formula.

        Returns
        -------
        Preimages
            ``status`` is UNSAT when every preimage was listed, SAT when ``limit`` was reached,
            UNKNOWN when the budget ran out (``time_s``: as in :meth:`preimage`).
        """
        label = self._check_label(label)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"The 'limit' parameter of SatInverter.preimages must be an int in [1, inf). Got {limit!r} instead.")
        budget = _Budget(self._budget(time_s))
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
        return Preimages(status, label, tuple(tuple(b) for b in found), time.perf_counter() - budget.t0)

    def min_flips(self, bits: Any, *, max_k: int | None = None, time_s: float | None = None,
                  hint: bool = True, enumerate_up_to: int = 0, bounds: bool = True,
                  max_free: int = 60) -> RobustnessResult:
        """Least number of bit flips of ``bits`` that changes the label; see :func:`min_flips`."""
        return min_flips(self, bits, max_k=max_k, time_s=time_s, hint=hint, enumerate_up_to=enumerate_up_to,
                         bounds=bounds, max_free=max_free)


def infer_all(inverter: SatInverter, bits: Any, reference: Any) -> InferenceSummary:
    """Label every row of ``bits`` ``(N, n_inputs)`` by SAT (:meth:`SatInverter.infer`) and compare
    with ``reference`` ``(N,)`` (e.g. PyTorch's labels): the loop the CLI, the pipeline and the
    benchmark share."""
    bits, reference = np.asarray(bits), np.asarray(reference).reshape(-1)
    if len(bits) != len(reference):
        raise ValueError(f"infer_all needs one reference label per input. Got {len(bits)} inputs and {len(reference)} labels.")
    agree = by_prop = conflicts = 0
    times = []
    for x, want in zip(bits, reference):
        r = inverter.infer(x)
        agree += int(r.label == int(want))
        by_prop += int(r.by_propagation)
        conflicts += r.conflicts
        times.append(r.seconds)
    return InferenceSummary(len(bits), agree / max(len(bits), 1), by_prop, conflicts,
                            float(np.median(times)) if times else None, float(np.max(times)) if times else None)
