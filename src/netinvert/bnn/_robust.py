"""Exhaustive small-radius flip search on the integer network, used to certify small ``k`` fast.

SAT proofs that *no* ``k``-flip changes a label are the slow part of minimal-flip robustness
(the solver must refute every combination through cardinality constraints, where CDCL is weak).
For small ``k`` the combinations can simply be listed: flipping bit ``j`` moves each first-layer
literal count by a known +-1, so all ``C(n, k)`` neighbours are evaluated in vectorised numpy
without re-running the first layer. Listing every neighbour is as exact a certificate as UNSAT.
"""

from __future__ import annotations

import itertools
import time
from math import comb

import numpy as np

from ._export import IntegerBNN

__all__ = ["exhaustive_flip_search"]


def _labels_from_first_counts(net: IntegerBNN, counts: np.ndarray) -> np.ndarray:
    """Labels given first-layer literal counts ``(m, H1)``."""
    # float32 matmuls use BLAS and are exact here (integer sums far below 2^24)
    v = (counts >= net.layers[0][1]).astype(np.float32)
    for lits, bounds in net.layers[1:]:
        pos, neg = (lits == 1).astype(np.float32), (lits == -1).astype(np.float32)
        v = ((v @ pos.T + (1 - v) @ neg.T) >= bounds).astype(np.float32)
    return ((2 * v - 1) @ net.head.astype(np.float32).T).argmax(1)


def exhaustive_flip_search(net: IntegerBNN, bits: np.ndarray, k: int, *, chunk: int = 20_000,
                           deadline: float | None = None) -> tuple[np.ndarray | None, bool]:
    """Look for a ``k``-subset of bits whose flip changes the label.

    Returns ``(indices or None, complete)``: ``complete`` is False when ``deadline`` (a
    ``time.perf_counter()`` value) passed before every ``C(n, k)`` subset was evaluated.
    """
    x = np.asarray(bits, dtype=np.int64).reshape(-1)
    if not net.layers:
        raise ValueError("exhaustive_flip_search needs at least one hidden layer.")
    lits = net.layers[0][0].astype(np.int64)
    label = int(net.predict(x[None])[0])
    pos, neg = (lits == 1).astype(np.int64), (lits == -1).astype(np.int64)
    base = x @ pos.T + (1 - x) @ neg.T  # (H1,)
    # flipping bit j: +1 to literal v_j's count if it becomes 1, -1 if it becomes 0; opposite for not v_j
    delta = (lits * (1 - 2 * x)[None, :]).T  # (n, H1)
    combos = itertools.combinations(range(len(x)), k)
    for _ in range(0, comb(len(x), k), chunk):
        if deadline is not None and time.perf_counter() > deadline:
            return None, False
        idx = np.array(list(itertools.islice(combos, chunk)), dtype=np.int64).reshape(-1, k)
        if not len(idx):
            break
        labels = _labels_from_first_counts(net, base[None, :] + delta[idx].sum(1))
        hit = np.flatnonzero(labels != label)
        if len(hit):
            return idx[hit[0]], True
    return None, True
