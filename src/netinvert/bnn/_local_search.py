"""Data-free phase hints for the SAT queries: tabu local search on the integer net, and a hint from data.

A hint only orders the solver's search (its full assignment becomes the preferred polarities); every
answer stays exact and UNSAT is still a proof. Without it, CDCL on the bare encoding missed half the
digits labels in 2 s; :func:`local_search_candidate` reaches every label in a few flips and needs no data.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["candidate_hint", "local_search_candidate"]

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
