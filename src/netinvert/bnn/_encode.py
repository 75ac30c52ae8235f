"""Encode an :class:`IntegerBNN` as one CNF ``BNN(X, H, Y)`` (Narodytska et al.; arXiv 2402.11995).

Variables (named through :class:`pysat.formula.IDPool`): ``("x", j)`` input bits, ``("h", l, i)``
hidden neurons, ``("cmp", a, b)`` for ``a < b`` meaning ``score_a >= score_b``, and ``("y", k)``
meaning "the label is k". Each hidden neuron is a reified cardinality constraint
``h <-> (sum of literals >= C)``; the argmax is ``y_k <-> (score_k >= score_b for b > k) and
(score_k > score_a for a < k)``, torch's tie rule (lowest index wins). Comparisons of integer
scores are weighted cardinality constraints on the last hidden layer (weights by repeated
literals). Everything is defined in both directions, so inputs determine every other variable by
unit propagation.
"""

from __future__ import annotations

import math
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysat.formula import CNFPlus, IDPool

from ._cardinality import CARDINALITY_ENCODINGS, reify_atleast
from ._export import IntegerBNN

__all__ = ["Encoding", "encode"]


@dataclass(frozen=True, eq=False)
class Encoding:
    """A BNN as CNF (plus native at-most constraints for the ``native`` encoding).

    Attributes
    ----------
    formula : CNFPlus
        Clauses in ``formula.clauses``; native constraints in ``formula.atmosts``.
    pool : IDPool
        Variable names (structured keys, see the module docstring).
    inputs : list of int
        Variable of each input bit, in input order (the projection set for counting).
    hidden : list of list of int
        Variable of each hidden neuron, per layer.
    outputs : list of int
        ``outputs[k]`` is true iff the network's label is ``k``.
    net : IntegerBNN
        The network encoded (used to check every answer).
    encoding : str
        Cardinality encoding name.
    encode_seconds : float
        Wall-clock seconds :func:`encode` took.

    An ``Encoding`` is never changed after :func:`encode`: solvers take fresh variables from
    their own pool and keep their clauses to themselves, and results carry their own fields.
    """

    formula: CNFPlus
    pool: IDPool
    inputs: list[int]
    hidden: list[list[int]]
    outputs: list[int]
    net: IntegerBNN
    encoding: str
    encode_seconds: float = 0.0

    @property
    def stats(self) -> Mapping[str, Any]:
        """Read-only sizes of the formula and the time to build it (``n_vars``, ``n_clauses``,
        ``n_atmosts``, ``encode_seconds``)."""
        return types.MappingProxyType({"n_vars": self.n_vars, "n_clauses": self.n_clauses,
                                       "n_atmosts": len(self.formula.atmosts), "encode_seconds": self.encode_seconds})

    @property
    def native(self) -> bool:
        """True if the formula holds native at-most constraints (needs Minicard/Gluecard)."""
        return bool(self.formula.atmosts)

    @property
    def n_vars(self) -> int:
        return self.pool.top

    def read_inputs(self) -> list[int]:
        """Positions of the inputs that occur in some clause.

        An input no neuron reads (fan-in or ternary pruning) is in no clause; counters drop such
        variables from their projection and samplers leave them unset, so both treat them as free.
        """
        occurring = {abs(lit) for clause in self.formula.clauses for lit in clause}
        return [i for i, v in enumerate(self.inputs) if v in occurring]

    @property
    def n_clauses(self) -> int:
        return len(self.formula.clauses)

    def input_assumptions(self, bits: Any) -> list[int]:
        """Literals fixing the inputs to ``bits`` (sequence of 0/1)."""
        return [v if int(b) else -v for v, b in zip(self.inputs, bits)]

    def decode_inputs(self, model: set[int] | list[int]) -> list[int]:
        """Input bits from a solver model (a variable absent from the model reads as 0)."""
        pos = set(l for l in model if l > 0)
        return [int(v in pos) for v in self.inputs]

    def variable_map(self) -> dict[str, Any]:
        """JSON-ready map from names to DIMACS variables."""
        return {"encoding": self.encoding, "n_vars": self.n_vars, "inputs": self.inputs,
                "hidden": self.hidden, "outputs": self.outputs}

    def to_dimacs(self, label: int | None = None) -> str:
        """DIMACS text with a ``c ind`` projection line on the inputs; ``label`` adds the unit ``y_label``.

        The native encoding is written in Minicard's ``p cnf+`` format (counters cannot read it).
        """
        lines = [f"c netinvert BNN encoding={self.encoding}", "c ind " + " ".join(map(str, self.inputs)) + " 0"]
        extra = [[self.outputs[label]]] if label is not None else []
        n_cl = len(self.formula.clauses) + len(extra) + len(self.formula.atmosts)
        lines.append(f"p {'cnf+' if self.native else 'cnf'} {self.n_vars} {n_cl}")
        lines.extend(" ".join(map(str, c)) + " 0" for c in [*self.formula.clauses, *extra])
        lines.extend(" ".join(map(str, c)) + f" <= {k}" for c, k in self.formula.atmosts)
        return "\n".join(lines) + "\n"

    def save(self, folder: str | Path, stem: str = "bnn", label: int | None = None) -> tuple[Path, Path]:
        """Write ``stem.cnf`` and ``stem.vars.json`` into ``folder``; returns both paths."""
        from ..runs import atomic_write_bytes, write_json

        folder = Path(folder)
        cnf = atomic_write_bytes(folder / f"{stem}.cnf", self.to_dimacs(label).encode())
        vmap = write_json(folder / f"{stem}.vars.json", {**self.variable_map(), "label": label})
        return cnf, vmap


def _weighted_literals(weights: list[int], lits: list[int]) -> list[int]:
    """Repeat each literal ``|w|`` times (negated when ``w < 0``), after dividing by the gcd."""
    g = math.gcd(*[abs(w) for w in weights if w]) or 1
    out = []
    for w, l in zip(weights, lits):
        out.extend([l if w > 0 else -l] * (abs(w) // g))
    return out


def encode(net: IntegerBNN, encoding: str = "totalizer") -> Encoding:
    """Encode ``net`` with the cardinality encoding named ``encoding``.

    Parameters
    ----------
    net : IntegerBNN
        The exported network (see :func:`export_bnn`).
    encoding : str
        One of :func:`list_cardinality_encodings` (``seqcounter``, ``sortnet``, ``totalizer``,
        ``native``).

    Returns
    -------
    Encoding

    Examples
    --------
    >>> import numpy as np
    >>> from netinvert.bnn import IntegerBNN, encode
    >>> net = IntegerBNN(layers=((np.array([[1, 1]], np.int8), np.array([2])),),
    ...                  head=np.array([[-1], [1]], np.int8))
    >>> enc = encode(net, "totalizer")
    >>> len(enc.inputs), len(enc.outputs)
    (2, 2)
    """
    CARDINALITY_ENCODINGS.get(encoding)  # fail early with the list of valid names
    t0 = time.perf_counter()
    pool = IDPool()
    formula = CNFPlus()
    inputs = [pool.id(("x", j)) for j in range(net.n_inputs)]
    prev = inputs
    hidden: list[list[int]] = []
    for layer, (lits, bounds) in enumerate(net.layers):
        cur = [pool.id(("h", layer, i)) for i in range(len(bounds))]
        for i, h in enumerate(cur):
            row = [int(w) for w in lits[i]]
            reify_atleast(encoding, _weighted_literals(row, prev), int(bounds[i]), h, pool, formula)
        hidden.append(cur)
        prev = cur
    k = net.n_classes
    outputs = [pool.id(("y", c)) for c in range(k)]
    cmp: dict[tuple[int, int], int] = {}
    head = net.head.astype(int)
    for a in range(k):
        for b in range(a + 1, k):
            v = cmp[a, b] = pool.id(("cmp", a, b))
            # score_a - score_b = sum_j d_j (2 g_j - 1) >= 0  <=>  sum_j |d_j| l_j >= ceil(sum |d_j| / 2)
            d = [int(x) for x in head[a] - head[b]]
            wl = _weighted_literals(d, prev)
            total = sum(abs(x) for x in d)
            g = math.gcd(*[abs(x) for x in d if x]) or 1
            need = -(-(-(-total // 2)) // g) if total else 0
            reify_atleast(encoding, wl, need, v, pool, formula)
    for c in range(k):
        conds = [cmp[c, b] for b in range(c + 1, k)] + [-cmp[a, c] for a in range(c)]
        formula.extend([[-outputs[c], x] for x in conds])
        formula.append([outputs[c], *[-x for x in conds]])
    return Encoding(formula=formula, pool=pool, inputs=inputs, hidden=hidden, outputs=outputs, net=net,
                    encoding=encoding, encode_seconds=time.perf_counter() - t0)
