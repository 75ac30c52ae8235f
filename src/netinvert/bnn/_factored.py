"""Exact counts of every label by a factored dynamic programme: input groups, independent blocks, dead classes.

:func:`count_all_labels` runs one DP over all inputs, and its state multiplies: partial sums of every
open neuron times every reachable vector of class scores. Three exact reductions make nets with
structure countable where that product is not (one hidden layer; :func:`count_labels_factored`):

1. **Input groups.** Inputs whose literal columns (the sign each neuron gives them) are equal up to
   one overall sign are interchangeable: a group of ``g`` such inputs adds ``e`` true literals to the
   neurons of one sign and ``g - e`` to the others, for ``e`` in ``[0, g]`` with multiplicity
   ``C(g, e)`` (Vandermonde). The DP takes one ``g + 1``-way step per group instead of ``g`` binary steps.
2. **Blocks.** Neurons that share no input (connected components of the neuron-group graph) are
   independent given the inputs: each block's histogram of score contributions ``z = W_head[:, J] (2 h_J - 1)``
   is computed alone, and the blocks are combined by adding score vectors (pairs of histograms,
   merged), the last block only to read off the argmax. A net whose first layer reads the image in
   four 16-pixel quadrants costs four DPs over 2^16 inputs, not one over 2^64.
3. **Dead classes.** A class that can no longer win whatever the neurons not yet folded do (its score
   plus its largest possible gain stays below, or level with a lower-indexed class's least) is
   replaced by a sentinel; with one live class left the label is decided, the state forgets its
   partial sums and merges with every other state deciding that label.

A block that reads many inputs (more than ``mitm_above``, at most 48) and has at most 24 neurons is not run
through the DP, whose middle states multiply, but split in two halves of its groups: the distinct
partial-sum vectors of each half are listed, and every pair gives one hidden pattern (meet in the
middle, ``2^(n/2) x 2^(n/2)`` pairs in numpy). With two blocks left, the label totals are summed over
pairs of score vectors, after a class is dropped on one side when the other side's actual score
differences can never lift it (both sides, then each side projected on the live classes and merged).

All of this keeps the counts exact (checked against brute force in tests); what is left is exponential
in the width of a block: a dense 49-20 layer is one block of 48 groups, and no reduction applies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from math import comb
from typing import Any

import numpy as np

from .._progress import progress_bar
from ._export import IntegerBNN

__all__ = ["count_labels_factored", "input_groups", "neuron_blocks"]

#: score of a class that can no longer win (live scores stay within +-(number of neurons) <= +-1000)
_DEAD = np.int16(-20000)


class _OutOfBudget(Exception):
    """The state limit or the time limit was passed (the caller reports UNKNOWN)."""


class _Pairs:
    """Counts the pairs formed (meet in the middle, combined histograms, label totals) on a progress bar,
    in units of ``unit`` pairs: they are where the minutes go (2 x 2^31 pattern pairs and 3.2 billion score
    pairs on the digits halves net)."""

    unit = 1_000_000

    def __init__(self, bar: Any) -> None:
        self.bar, self._left = bar, 0

    def __call__(self, n: int) -> None:
        self._left += int(n)
        whole, self._left = divmod(self._left, self.unit)
        if whole:
            self.bar.update(whole)

    def stage(self, text: str) -> None:
        self.bar.set_postfix_str(text)


def input_groups(lits: np.ndarray) -> tuple[list[list[int]], np.ndarray, list[int]]:
    """Inputs with equal literal columns up to one sign, as groups.

    Returns ``(groups, columns, unread)``: the input indices of each group, each group's column
    ``(H, n_groups)`` in {-1, 0, +1} normalised so that its first nonzero entry is +1, and the
    inputs no neuron reads (each doubles every count).
    """
    cols: dict[bytes, int] = {}
    groups: list[list[int]] = []
    reps: list[np.ndarray] = []
    unread = []
    for i in range(lits.shape[1]):
        c = lits[:, i].astype(np.int8)
        nz = np.flatnonzero(c)
        if not len(nz):
            unread.append(i)
            continue
        c = c * c[nz[0]]
        k = c.tobytes()
        if k not in cols:
            cols[k] = len(groups)
            groups.append([])
            reps.append(c)
        groups[cols[k]].append(i)
    columns = np.stack(reps, 1) if reps else np.zeros((lits.shape[0], 0), dtype=np.int8)
    return groups, columns, unread


def neuron_blocks(columns: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Connected components of the graph neurons -- groups they read: ``[(neurons, groups), ...]``.

    Neurons that read no group are left out (they are constants)."""
    n_h, n_g = columns.shape
    parent = list(range(n_h + n_g))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for j, g in zip(*np.nonzero(columns)):
        parent[find(int(j))] = find(n_h + int(g))
    out: dict[int, tuple[list[int], list[int]]] = {}
    for j in range(n_h):
        if columns[j].any():
            out.setdefault(find(j), ([], []))[0].append(j)
    for g in range(n_g):
        out[find(n_h + g)][1].append(g)
    return list(out.values())


def _merge(states: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Identical (state, scores) rows become one row with the counts added (uint64 wraps mod 2^64: exact here)."""
    rows = np.concatenate([np.ascontiguousarray(states).view(np.uint8), np.ascontiguousarray(scores).view(np.uint8)], 1)
    if rows.shape[1] == 0:
        return states[:1], scores[:1], np.array([counts.sum(dtype=np.uint64)], dtype=np.uint64)
    key = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()
    idx = np.argsort(key, kind="stable")
    sk = key[idx]
    first = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    return states[idx[first]], scores[idx[first]], np.add.reduceat(counts[idx], first)


def _prune(scores: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mark dead classes and normalise: returns ``(scores, decided)``.

    ``reach[m, k]`` is the most that class ``m`` can still gain on class ``k`` (sum over the
    neurons not yet folded of ``|W_mj - W_kj|``). Class ``m`` is dead when some ``k`` ends above it
    whatever those neurons do, or level with it and ``k < m`` (argmax takes the lowest index).
    Live scores are shifted so that the best is 0 (argmax ignores a common shift).
    """
    live = scores != _DEAD
    s = scores.astype(np.int32)
    k_classes = s.shape[1]
    lower = np.tri(k_classes, k=-1, dtype=bool)  # lower[m, k]: k < m
    for lo in range(0, len(s), 1 << 16):
        blk = s[lo:lo + (1 << 16)]
        lv = live[lo:lo + (1 << 16)]
        gap = blk[:, :, None] - blk[:, None, :] + reach[None]  # [n, m, k]: m's best margin over k
        beaten = (gap < 0) | ((gap == 0) & lower[None])
        beaten &= lv[:, None, :]  # only a live class can beat another
        lv &= ~beaten.any(2)
        live[lo:lo + (1 << 16)] = lv
    best = np.where(live, s, -(1 << 20)).max(1, keepdims=True)
    out = np.where(live, s - best, int(_DEAD)).astype(np.int16)
    return out, live.sum(1) == 1


def _reach(head: np.ndarray, neurons: np.ndarray) -> np.ndarray:
    """``reach[m, k] = sum_j |W_mj - W_kj|`` over ``neurons`` (int32 ``(K, K)``)."""
    w = head[:, neurons].astype(np.int32)
    return np.abs(w[:, None, :] - w[None, :, :]).sum(2)


def _block_histogram(cols: np.ndarray, sizes: np.ndarray, bounds: np.ndarray, head: np.ndarray, neurons: list[int],
                     max_states: int, deadline: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram ``(scores (N, K) int16, counts (N,) uint64)`` of one block's score contributions.

    ``cols`` ``(J, G)``: the block's neurons over its groups (in reading order), ``sizes`` the group
    sizes. The histogram is computed alone, so every neuron outside the block (and every one of
    its own not folded yet) counts as free when classes are pruned.
    """
    n_j, n_g = cols.shape
    used = cols != 0
    width = (used * sizes[None, :]).astype(np.int64)
    remaining = np.concatenate([width[:, ::-1].cumsum(1)[:, ::-1], np.zeros((n_j, 1), dtype=np.int64)], 1)
    states = np.clip(bounds, 0, remaining[:, 0] + 1).astype(np.int16)[None, :]
    scores = np.zeros((1, head.shape[0]), dtype=np.int16)
    counts = np.ones(1, dtype=np.uint64)
    alive = np.ones(n_j, dtype=bool)
    pending = np.ones(head.shape[1], dtype=bool)
    neurons_arr = np.asarray(neurons)
    for t in range(n_g + 1):
        if t < n_g:
            g = int(sizes[t])
            pos, neg = cols[alive, t] > 0, cols[alive, t] < 0
            parts, cparts = [], []
            for e in range(g + 1):
                step = (pos * e + neg * (g - e)).astype(np.int16)
                parts.append(np.clip(states - step, 0, (remaining[alive, t + 1] + 1).astype(np.int16)))
                cparts.append(counts * np.uint64(comb(g, e)))
            states, counts = np.concatenate(parts), np.concatenate(cparts)
            scores = np.concatenate([scores] * (g + 1))
        finished = remaining[alive, min(t + 1, n_g)] == 0
        if finished.any():
            done = neurons_arr[alive][finished]
            bits = (states[:, finished] == 0).astype(np.int16)
            add = (2 * bits - 1) @ head[:, done].T.astype(np.int16)
            scores = np.where(scores == _DEAD, _DEAD, scores + add).astype(np.int16)
            states = states[:, ~finished]
            alive[np.flatnonzero(alive)[finished]] = False
            pending[done] = False
            scores, decided = _prune(scores, _reach(head, np.flatnonzero(pending)))
            states[decided] = 0  # the label is fixed: the open neurons' partial sums no longer matter
        states, scores, counts = _merge(states, scores, counts)
        if len(states) > max_states:
            raise _OutOfBudget(f"over {max_states:,} states in a block of {n_j} neurons")
        if deadline is not None and time.perf_counter() > deadline:
            raise _OutOfBudget("time limit")
    return scores, counts


#: widest block (neurons) the meet-in-the-middle histogram takes: it keeps a float64 count per hidden pattern
_MITM_MAX_NEURONS = 24


def _half_vectors(cols: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct true-literal counts ``(N, J)`` of the neurons over the groups ``cols`` ``(J, G)`` with
    multiplicities (float64, exact below 2^53): group ``t`` adds ``e`` to its +1 neurons and
    ``size - e`` to its -1 neurons, ``C(size, e)`` times."""
    vec = np.zeros((1, cols.shape[0]), dtype=np.int16)
    mult = np.ones(1, dtype=np.float64)
    for t in range(cols.shape[1]):
        g = int(sizes[t])
        pos, neg = (cols[:, t] > 0).astype(np.int16), (cols[:, t] < 0).astype(np.int16)
        vec = np.concatenate([vec + pos * e + neg * (g - e) for e in range(g + 1)])
        mult = np.concatenate([mult * comb(g, e) for e in range(g + 1)])
        vec, inv = np.unique(vec, axis=0, return_inverse=True)
        mult = np.bincount(inv.ravel(), weights=mult, minlength=len(vec))
    return vec, mult


def _block_histogram_mitm(cols: np.ndarray, sizes: np.ndarray, bounds: np.ndarray, head: np.ndarray,
                          neurons: list[int], deadline: float | None, stats: dict, tick: _Pairs
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The histogram of :func:`_block_histogram`, by meet in the middle over the block's groups.

    The groups are split in two halves; each half's distinct partial sums (true literals per
    neuron) are listed with multiplicities, and every pair (one from each half) gives the hidden
    pattern ``[a + b >= C]``, counted per pattern (``np.bincount`` with float64 weights: exact:
    a block reads at most 48 inputs, so every sum stays below ``2^53``). The patterns are then turned into score vectors and pruned as
    in the DP (every neuron outside the block free).
    """
    n_j, n_g = cols.shape
    work = np.cumsum(np.log2(sizes + 1.0))  # the halves list about equally many (e_1, ..., e_t) each
    cut = int(np.searchsorted(work, work[-1] / 2)) + 1 if n_g else 0
    a, qa = _half_vectors(cols[:, :cut], sizes[:cut])
    b, qb = _half_vectors(cols[:, cut:], sizes[cut:])
    need = (np.asarray(bounds, dtype=np.int64)[None, :] - a).clip(-1, int(sizes[cut:].sum()) + 1).astype(np.int16)
    stats["mitm_pairs"] = stats.get("mitm_pairs", 0) + len(a) * len(b)
    pattern = np.zeros(1 << n_j, dtype=np.float64)
    n_bytes = (n_j + 7) // 8
    step = max(1, (1 << 23) // len(b))
    for lo in range(0, len(a), step):
        bits = np.packbits(b[None, :, :] >= need[lo:lo + step, None, :], axis=-1, bitorder="little")
        code = bits[..., 0].astype(np.int64)
        for i in range(1, n_bytes):
            code |= bits[..., i].astype(np.int64) << (8 * i)
        pattern += np.bincount(code.ravel(), weights=np.multiply.outer(qa[lo:lo + step], qb).ravel(), minlength=1 << n_j)
        tick(len(code) * len(b))
        if deadline is not None and time.perf_counter() > deadline:
            raise _OutOfBudget("time limit")
    if pattern.sum() != 2.0 ** int(sizes.sum()):
        raise RuntimeError("count_labels_factored: a block's hidden patterns do not add up; please report this net.")
    nz = np.flatnonzero(pattern)
    h = ((nz[:, None] >> np.arange(n_j)) & 1).astype(np.int16)
    scores = ((2 * h - 1) @ head[:, neurons].T.astype(np.int16)).astype(np.int16)
    pending = np.ones(head.shape[1], dtype=bool)
    pending[neurons] = False
    scores, _ = _prune(scores, _reach(head, np.flatnonzero(pending)))
    e = np.zeros((len(scores), 0), dtype=np.int16)
    _, scores, counts = _merge(e, scores, pattern[nz].astype(np.uint64))
    return scores, counts


def _add_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sums of score rows (broadcast), a dead class staying dead."""
    s = a.astype(np.int32) + b.astype(np.int32)
    return np.where((a == _DEAD) | (b == _DEAD), int(_DEAD), s).astype(np.int16)


def _by_live_set(sa: np.ndarray, ca: np.ndarray, sb: np.ndarray, cb: np.ndarray
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Split the left histogram by its set ``L`` of live classes; yield ``(L, sa_L, ca, sb_L, cb)``.

    A class dead on the left is dead in every sum, so only the columns ``L`` of the right
    histogram matter: projected on them, shifted so that their best live score is 0 (argmax and
    pruning ignore a common shift) and merged it is often far smaller (two live classes leave one
    score difference), and that is what the pairs are formed with.
    """
    live = sa != _DEAD
    code = live.astype(np.int64) @ (1 << np.arange(sa.shape[1], dtype=np.int64))
    sets, inverse = np.unique(code, return_inverse=True)
    inverse = inverse.ravel()
    for i, c in enumerate(sets):
        cols = np.flatnonzero((int(c) >> np.arange(sa.shape[1])) & 1)
        rows = np.flatnonzero(inverse == i)
        pb = sb[:, cols].astype(np.int32)
        lb = pb != _DEAD
        best = np.where(lb, pb, -(1 << 20)).max(1, keepdims=True)
        pb = np.where(lb, pb - np.where(lb.any(1, keepdims=True), best, 0), int(_DEAD)).astype(np.int16)
        e = np.zeros((len(sb), 0), dtype=np.int16)
        _, pb, qb = _merge(e, pb, cb)
        yield cols, np.ascontiguousarray(sa[np.ix_(rows, cols)]), ca[rows], pb, qb


def _ranges(s: np.ndarray) -> np.ndarray:
    """``D[m, k]``: the most class ``m`` gains on class ``k`` over the rows of a histogram where ``m`` is live.

    A row where ``m`` is live and ``k`` dead (its score forgotten) gives no bound (``2^20``); a class
    live in no row gets ``-2^20`` (it never wins, whatever the other side adds). With the other
    side's ``D`` in place of ``reach``, :func:`_prune` drops what that side can never lift.
    """
    k_classes = s.shape[1]
    big = 1 << 20
    live = s != _DEAD
    out = np.full((k_classes, k_classes), -big, dtype=np.int64)
    v = s.astype(np.int64)
    for m in range(k_classes):
        rows = live[:, m]
        if rows.any():
            gain = np.where(live[rows], v[rows, m:m + 1] - v[rows], big)
            out[m] = gain.max(0)
    return out


def _pair_labels(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """``argmax(pa_i + pb_j)`` for every pair (lowest index on ties, dead classes never win): ``(len(pa), len(pb))``."""
    a = np.where(pa == _DEAD, np.int16(-10000), pa).astype(np.int16)  # live scores are >= -2000: a dead sum stays below
    b = np.where(pb == _DEAD, np.int16(-10000), pb).astype(np.int16)
    return (a[:, None, :] + b[None, :, :]).argmax(2)


def _combine(sa: np.ndarray, ca: np.ndarray, sb: np.ndarray, cb: np.ndarray, reach: np.ndarray, max_states: int,
             deadline: float | None, stats: dict, tick: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    """The histogram of sums of two independent blocks' score vectors, pruned and merged."""
    out_s, out_c = [], []
    for cols, pa, qa, pb, qb in _by_live_set(sa, ca, sb, cb):
        stats["pairs"] = stats.get("pairs", 0) + len(pa) * len(pb)
        if stats["pairs"] > 50 * max_states:
            raise _OutOfBudget(f"over {50 * max_states:,} score pairs")
        step = max(1, (1 << 22) // max(len(pb), 1))
        for lo in range(0, len(pa), step):
            part = _add_scores(pa[lo:lo + step, None, :], pb[None, :, :]).reshape(-1, len(cols))
            full = np.full((len(part), sa.shape[1]), _DEAD, dtype=np.int16)
            full[:, cols] = part
            c = (qa[lo:lo + step, None] * qb[None, :]).ravel()
            full, _ = _prune(full, reach)
            e = np.zeros((len(full), 0), dtype=np.int16)
            _, full, c = _merge(e, full, c)
            out_s.append(full)
            out_c.append(c)
            tick(len(part))
            if deadline is not None and time.perf_counter() > deadline:
                raise _OutOfBudget("time limit")
    e = np.zeros((sum(len(s) for s in out_s), 0), dtype=np.int16)
    _, s, c = _merge(e, np.concatenate(out_s), np.concatenate(out_c))
    if len(s) > max_states:
        raise _OutOfBudget(f"over {max_states:,} combined score vectors")
    return s, c


def _label_totals(sa: np.ndarray, ca: np.ndarray, sb: np.ndarray, cb: np.ndarray, n_classes: int,
                  deadline: float | None, stats: dict, max_pairs: int, tick: _Pairs) -> list[int]:
    """``sum ca_i cb_j [argmax(sa_i + sb_j) = k]`` for every ``k`` (uint64, wrapping mod 2^64).

    Each side is first pruned by the other's actual score differences (:func:`_ranges`, both taken
    before either is pruned), then pairs are formed per live set of the left side.
    """
    da, db = _ranges(sa), _ranges(sb)
    e = np.zeros((len(sa), 0), dtype=np.int16)
    _, sa, ca = _merge(e, _prune(sa, db)[0], ca)
    e = np.zeros((len(sb), 0), dtype=np.int16)
    _, sb, cb = _merge(e, _prune(sb, da)[0], cb)
    stats["final_sides"] = [len(sa), len(sb)]
    totals = [0] * n_classes
    for cols, pa, qa, pb, qb in _by_live_set(sa, ca, sb, cb):
        if len(cols) == 1:  # decided
            totals[int(cols[0])] = (totals[int(cols[0])] + int(qa.sum(dtype=np.uint64)) * int(qb.sum(dtype=np.uint64))) % 2**64
            continue
        stats["pairs"] = stats.get("pairs", 0) + len(pa) * len(pb)
        if stats["pairs"] > max_pairs:
            raise _OutOfBudget(f"over {max_pairs:,} score pairs")
        step = max(1, (1 << 22) // max(len(pb), 1))
        for lo in range(0, len(pa), step):
            lab = _pair_labels(pa[lo:lo + step], pb)
            for i, k in enumerate(cols):
                v = np.where(lab == i, qb[None, :], np.uint64(0)).sum(1, dtype=np.uint64)
                totals[k] = (totals[k] + int((v * qa[lo:lo + step]).sum(dtype=np.uint64))) % 2**64
            tick(lab.size)
            if deadline is not None and time.perf_counter() > deadline:
                raise _OutOfBudget("time limit")
    return totals


def count_labels_factored(net: IntegerBNN, *, max_states: int = 20_000_000, time_s: float | None = 60.0,
                          mitm_above: int = 24, progress: bool = False) -> tuple[list[int] | None, dict]:
    """Exact count of the inputs of every label, by input groups, blocks and dead classes.

    Returns ``(counts, info)``: ``counts[k]`` is the number of inputs labelled ``k`` (``None``
    when ``max_states`` or ``time_s`` ran out), ``info`` the structure found (``groups``,
    ``blocks``: neurons and groups per block, ``largest_state``, ``reason`` when out of budget).
    Counts sum to ``2 ** n_inputs`` (checked). One hidden layer; at most 64 inputs read.

    A block reading more than ``mitm_above`` inputs (at most 48) with at most 24 neurons gets its
    histogram by meet in the middle over its groups (``info["mitm_blocks"]``) instead of the DP.
    ``progress`` shows the pairs formed so far (millions) and the stage: minutes pass without output otherwise.

    Raises
    ------
    ValueError
        More than one hidden layer, or more than 64 inputs read by the first layer.
    """
    if len(net.layers) != 1:
        raise ValueError(f"count_labels_factored needs a net with exactly one hidden layer. Got {len(net.layers)} instead; use method='dp'.")
    t0 = time.perf_counter()
    deadline = None if time_s is None or not np.isfinite(time_s) else t0 + float(time_s)
    lits, bounds = net.layers[0]
    head = net.head.astype(np.int16)
    groups, columns, unread = input_groups(lits)
    n_read = net.n_inputs - len(unread)
    if n_read > 64:
        raise ValueError(f"count_labels_factored keeps counts in uint64: at most 64 inputs read by the first layer. Got {n_read} instead.")
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    blocks = neuron_blocks(columns)
    # blocks with few groups first: their histograms are small, the widest block is combined last
    blocks.sort(key=lambda b: (int(sizes[b[1]].sum()), len(b[0])))
    info: dict = {"groups": len(groups), "group_sizes": sorted(sizes.tolist(), reverse=True),
                  "blocks": [(len(j), int(sizes[g].sum())) for j, g in blocks], "largest_state": 1}
    const = np.flatnonzero(~columns.any(1)) if columns.size else np.arange(lits.shape[0])
    base = ((2 * (bounds[const] <= 0).astype(np.int16) - 1) @ head[:, const].T.astype(np.int16))[None, :]
    pending = np.ones(lits.shape[0], dtype=bool)
    pending[const] = False
    from ._count import dp_input_order

    bar = progress_bar(None, "count (factored), million pairs", enabled=progress)
    tick = _Pairs(bar)
    try:
        acc_s, acc_c = base.astype(np.int16), np.ones(1, dtype=np.uint64)
        acc_s, _ = _prune(acc_s, _reach(head, np.flatnonzero(pending)))
        for i, (neurons, gidx) in enumerate(blocks):
            sub = columns[np.ix_(neurons, gidx)]
            order = dp_input_order(sub)
            gsel = np.asarray(gidx)[order]
            width = int(sizes[gsel].sum())
            tick.stage(f"block {i + 1}/{len(blocks)}: {len(neurons)} neurons, {width} inputs")
            if mitm_above < width <= 48 and len(neurons) <= _MITM_MAX_NEURONS:
                hs, hc = _block_histogram_mitm(columns[np.ix_(neurons, gsel)], sizes[gsel], bounds[neurons], head,
                                               neurons, deadline, info, tick)
                info["mitm_blocks"] = info.get("mitm_blocks", 0) + 1
            else:
                hs, hc = _block_histogram(columns[np.ix_(neurons, gsel)], sizes[gsel], bounds[neurons], head, neurons,
                                          max_states, deadline)
            pending[neurons] = False
            info["largest_state"] = max(info["largest_state"], len(hs))
            info.setdefault("histograms", []).append(len(hs))
            if i < len(blocks) - 1:
                acc_s, acc_c = _combine(acc_s, acc_c, hs, hc, _reach(head, np.flatnonzero(pending)), max_states, deadline, info,
                                        tick)
                info["largest_state"] = max(info["largest_state"], len(acc_s))
                info.setdefault("combined", []).append(len(acc_s))
            else:
                tick.stage(f"label totals over {len(acc_s):,} x {len(hs):,} score vectors")
                totals = _label_totals(acc_s, acc_c, hs, hc, net.n_classes, deadline, info, 500 * max_states, tick)
        if not blocks:
            totals = [0] * net.n_classes
            totals[int(acc_s[0].argmax())] = 1
    except _OutOfBudget as exc:
        info["reason"] = str(exc)
        info["seconds"] = time.perf_counter() - t0
        return None, info
    finally:
        bar.close()
    if n_read == 64 and sum(totals) == 0:  # every input has one label: its 2^64 wrapped to 0
        totals[int(net.predict(np.zeros((1, net.n_inputs), dtype=np.int8))[0])] = 2**64
    if sum(totals) != 2**n_read:
        raise RuntimeError("count_labels_factored: the counts do not add up to the number of inputs; please report this net.")
    info["seconds"] = time.perf_counter() - t0
    return [c << len(unread) for c in totals], info
