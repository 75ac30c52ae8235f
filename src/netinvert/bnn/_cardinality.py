"""Reified cardinality constraints ``out <-> (sum(lits) >= bound)`` that unit propagation decides.

Off-the-shelf encodings (PySAT's ``CardEnc``) only encode ``sum <= k``; reifying them by appending a
selector to every clause is correct but stops unit propagation (even inference with fixed inputs
becomes search: METHODS.md section 5). Here every counter is built from *gates defined in both
directions* (``z <-> a or b``, ``z <-> a and b``, totalizer merges with up and down clauses), so with
all inputs fixed every counter output -- and hence ``out`` -- is fixed by propagation alone, and
every auxiliary variable is a function of the inputs: model counts and uniform samples over all
variables equal those over the inputs.

Encodings are registered by name in :data:`CARDINALITY_ENCODINGS`. The dispatcher
:func:`reify_atleast` handles the shared parts once: constant constraints, repeated literals
(integer weights), and counting the *complement* when ``bound`` is above ``n/2`` (counters
truncated at ``min(bound, n - bound + 1)`` are smaller).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pysat.formula import CNFPlus, IDPool

from .._registry import Registry

__all__ = ["CardinalityEncoding", "CARDINALITY_ENCODINGS", "list_cardinality_encodings", "reify_atleast", "unary_counter"]

_TRUE = object()  # constant sentinels; folded away so they never reach the CNF
_FALSE = object()


@dataclass(frozen=True)
class CardinalityEncoding:
    """A named way of building ``out <-> (sum(lits) >= bound)``.

    ``build(gates, lits, bound)`` returns the literal (or constant) meaning ``sum >= bound``, for
    ``1 <= bound <= len(lits)``. ``native`` encodings add Minicard at-most constraints instead and
    need a solver with native cardinality (``minicard``, ``gluecard3``, ``gluecard4``); model
    counters and samplers cannot read them.
    """

    name: str
    description: str
    build: Callable[["_Gates", list[int], int], object] | None
    native: bool = False


CARDINALITY_ENCODINGS: Registry[CardinalityEncoding] = Registry("cardinality encoding")


def list_cardinality_encodings() -> list[str]:
    """Names accepted by :func:`netinvert.bnn.encode`."""
    return CARDINALITY_ENCODINGS.names()


class _Gates:
    """Both-direction AND/OR gates with constant folding, writing into one formula."""

    def __init__(self, pool: IDPool, formula: CNFPlus) -> None:
        self.pool, self.formula = pool, formula

    def and_(self, a: object, b: object) -> object:
        if a is _FALSE or b is _FALSE:
            return _FALSE
        if a is _TRUE:
            return b
        if b is _TRUE or a == b:
            return a
        if a == -b:  # type: ignore[operator]
            return _FALSE
        z = self.pool.id()
        self.formula.extend([[-z, a], [-z, b], [z, -a, -b]])  # type: ignore[operator]
        return z

    def or_(self, a: object, b: object) -> object:
        if a is _TRUE or b is _TRUE:
            return _TRUE
        if a is _FALSE:
            return b
        if b is _FALSE or a == b:
            return a
        if a == -b:  # type: ignore[operator]
            return _TRUE
        z = self.pool.id()
        self.formula.extend([[z, -a], [z, -b], [-z, a, b]])  # type: ignore[operator]
        return z


def reify_atleast(encoding: str, lits: Sequence[int], bound: int, out: int, pool: IDPool, formula: CNFPlus) -> None:
    """Add ``out <-> (sum(lits) >= bound)`` to ``formula`` with the encoding named ``encoding``.

    ``lits`` may repeat a literal to give it an integer weight.
    """
    enc = CARDINALITY_ENCODINGS.get(encoding)
    lits = [int(l) for l in lits]
    n = len(lits)
    if bound <= 0:
        formula.append([out])
        return
    if bound > n:
        formula.append([-out])
        return
    if enc.native:
        # out -> sum(lits) >= bound  <=>  sum(not lits) + bound * out <= n
        formula.append([[-l for l in lits] + [out] * bound, n], is_atmost=True)
        # not out -> sum(lits) <= bound - 1  <=>  sum(lits) + (n - bound + 1) * (not out) <= n
        formula.append([lits + [-out] * (n - bound + 1), n], is_atmost=True)
        return
    if bound > n - bound + 1:  # count the complement: sum(not lits) >= n - bound + 1 <-> not out
        lits, bound, out = [-l for l in lits], n - bound + 1, -out
    top = enc.build(_Gates(pool, formula), lits, bound)  # type: ignore[misc]
    if top is _TRUE:
        formula.append([out])
    elif top is _FALSE:
        formula.append([-out])
    else:
        formula.extend([[-out, top], [out, -top]])  # type: ignore[operator]


def _seqcounter(g: _Gates, x: list[int], k: int) -> object:
    """Sequential counter (Sinz): ``s[i][j] <-> s[i-1][j] or (s[i-1][j-1] and x_i)``.

    Only the window of counts that can still reach ``k`` is built: O(n * k) gates.
    """
    n = len(x)
    prev: dict[int, object] = {}  # j -> s[i-1][j], for the needed window

    def get(row: dict[int, object], i: int, j: int) -> object:
        if j <= 0:
            return _TRUE
        if j > i:
            return _FALSE
        return row[j]

    for i in range(1, n + 1):
        lo, hi = max(1, k - (n - i)), min(i, k)
        row = {j: _seq_cell(g, get(prev, i - 1, j), get(prev, i - 1, j - 1), x[i - 1]) for j in range(lo, hi + 1)}
        prev = row
    return prev[k]


def unary_counter(lits: Sequence[int], k: int, pool: IDPool, formula: CNFPlus) -> list[int]:
    """Totalizer outputs ``o[j-1] <-> (sum(lits) >= j)`` for ``j = 1..min(k, n)``, both directions.

    Used for incremental bounds (Hamming balls): assume ``not o[k]`` to allow at most ``k``.
    """
    if not lits:
        return []
    return _totalizer_tree(_Gates(pool, formula), [int(l) for l in lits], min(k, len(lits)))


def _seq_cell(g: _Gates, a: object, b: object, x: int) -> object:
    """``z <-> a or (b and x)`` as one variable and four clauses (gates when a constant folds)."""
    if a is _TRUE or a is _FALSE or b is _TRUE or b is _FALSE or len({abs(a), abs(b), abs(x)}) < 3:  # type: ignore[arg-type]
        return g.or_(a, g.and_(b, x))
    z = g.pool.id()
    g.formula.extend([[-a, z], [-b, -x, z], [-z, a, b], [-z, a, x]])  # type: ignore[operator]
    return z


def _totalizer(g: _Gates, x: list[int], k: int) -> object:
    """Totalizer (Bailleux-Boufkhad) with both up and down clauses, outputs truncated at ``k``."""
    return _totalizer_tree(g, x, k)[k - 1]


def _totalizer_tree(g: _Gates, x: list[int], k: int) -> list[int]:
    f = g.formula

    def build(lo: int, hi: int) -> list[int]:
        if hi - lo == 1:
            return [x[lo]]
        mid = (lo + hi) // 2
        a, b = build(lo, mid), build(mid, hi)
        p, q = len(a), len(b)
        r = min(p + q, k)
        o = [g.pool.id() for _ in range(r)]
        for i in range(p + 1):
            for j in range(q + 1):
                if i + j >= 1:  # a_i and b_j -> o_{min(i+j, r)}
                    f.append([*([-a[i - 1]] if i else []), *([-b[j - 1]] if j else []), o[min(i + j, r) - 1]])
                if i + j + 1 <= r:  # not a_{i+1} and not b_{j+1} -> not o_{i+j+1}
                    f.append([*([a[i]] if i < p else []), *([b[j]] if j < q else []), -o[i + j]])
        return o

    return build(0, len(x))


def _batcher_pairs(n: int) -> list[tuple[int, int]]:
    """Comparators of Batcher's odd-even merge sort on ``n`` (a power of two) wires."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def _sortnet(g: _Gates, x: list[int], k: int) -> object:
    """Batcher odd-even sorting network (descending), pruned backwards to the ``k``-th output.

    Each comparator is ``(a or b, a and b)`` with both-direction gates; only gates that feed output
    ``k - 1`` are built, and padding wires are the constant false, folded away.
    """
    size = 1 << max(0, (len(x) - 1).bit_length())
    pairs = _batcher_pairs(size)
    need = {k - 1}
    used: list[tuple[int, int, bool, bool]] = []
    for i, j in reversed(pairs):
        want_hi, want_lo = i in need, j in need
        if want_hi or want_lo:
            used.append((i, j, want_hi, want_lo))
            need.update((i, j))
    wires: list[object] = [*x, *([_FALSE] * (size - len(x)))]
    for i, j, want_hi, want_lo in reversed(used):
        a, b = wires[i], wires[j]
        wires[i] = g.or_(a, b) if want_hi else None
        wires[j] = g.and_(a, b) if want_lo else None
    return wires[k - 1]


CARDINALITY_ENCODINGS.add("seqcounter", CardinalityEncoding(
    "seqcounter", "sequential counter, both-direction gates, O(n k)", _seqcounter))
CARDINALITY_ENCODINGS.add("totalizer", CardinalityEncoding(
    "totalizer", "totalizer with up and down clauses, outputs truncated at k, O(n k)", _totalizer))
CARDINALITY_ENCODINGS.add("sortnet", CardinalityEncoding(
    "sortnet", "Batcher odd-even sorting network pruned to the k-th output, O(n log^2 n)", _sortnet))
CARDINALITY_ENCODINGS.add("native", CardinalityEncoding(
    "native", "Minicard/Gluecard native at-most constraints (weights by repeated literals)", None, native=True))
