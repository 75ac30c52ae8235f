"""Exhaustive small-radius flip search on the integer network, used to certify small ``k`` fast.

SAT proofs that *no* ``k``-flip changes a label are the slow part of minimal-flip robustness
(the solver must refute every combination through cardinality constraints, where CDCL is weak).
For small ``k`` the combinations can simply be listed: flipping bit ``j`` moves each first-layer
literal count by a known +-1, so all ``C(n, k)`` neighbours are evaluated in vectorised numpy
without re-running the first layer. Listing every neighbour is as exact a certificate as UNSAT.

For larger ``k``, :func:`flip_bounds` propagates sound intervals through the layers instead: it
proves most hidden neurons constant over the whole Hamming ball (and often the label itself), so
no neighbour need be listed and the SAT call that remains gets those neurons as implied units.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from math import comb

import numpy as np

from ._export import IntegerBNN
from ._solve import SatResult

__all__ = ["FlipBounds", "exhaustive_flip_search", "flip_bounds"]


def exhaustive_flip_search(net: IntegerBNN, bits: np.ndarray, k: int, *, chunk: int = 20_000,
                           deadline: float | None = None, bounds: FlipBounds | None = None,
                           max_free: int = 60) -> tuple[np.ndarray | None, bool]:
    """Look for a ``k``-subset of bits whose flip changes the label.

    With ``bounds`` (:func:`flip_bounds` at radius ``>= k``) and at most ``max_free`` free
    first-layer neurons, each subset is checked against the label-changing change patterns of
    the free neurons (found as in :func:`pattern_flip_search`) instead of by a forward pass:
    every subset is still listed, and on the ball those patterns decide the label exactly.

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

    bad = None
    if bounds is not None and bounds.k >= k:
        if bounds.certified:  # no input of the ball changes the label: nothing to list
            return None, True
        free1 = np.flatnonzero(~bounds.fixed[0])
        if len(free1) <= min(max_free, 62):
            bad = _bad_patterns(net, bounds, free1, deadline=deadline)
            if bad is not None and not len(bad):  # no change pattern of the free neurons changes the label
                return None, True
            need, towards = _moves(net, x, bounds, free1)
            pow2 = 1 << np.arange(len(free1), dtype=np.int64)

    def changes(idx: np.ndarray) -> np.ndarray:
        if bad is not None:
            return np.isin((towards[idx].sum(1) >= need[None, :]) @ pow2, bad)
        first = base[None, :] + delta[idx].sum(1) >= net.layers[0][1]  # first-layer bits after the flips
        return net.predict(first, start=1) != label

    combos = itertools.combinations(range(len(x)), k)
    for _ in range(0, comb(len(x), k), chunk):
        if deadline is not None and time.perf_counter() > deadline:
            return None, False
        idx = np.array(list(itertools.islice(combos, chunk)), dtype=np.int64).reshape(-1, k)
        if not len(idx):
            break
        hit = np.flatnonzero(changes(idx))
        if len(hit):
            return idx[hit[0]], True
    return None, True


@dataclass(frozen=True)
class FlipBounds:
    """What :func:`flip_bounds` proved about every input within ``k`` flips of ``bits``.

    Attributes
    ----------
    k : int
        The radius.
    label : int
        The label of ``bits``.
    values : list of ndarray
        Per hidden layer, the neurons' int64 values at ``bits``.
    fixed : list of ndarray
        Per hidden layer, a bool mask: True where the neuron provably keeps its value in the ball.
    certified : bool
        True when no input within the ball gets another label.
    """

    k: int
    label: int
    values: list[np.ndarray]
    fixed: list[np.ndarray]
    certified: bool

    @property
    def n_fixed(self) -> int:
        return int(sum(f.sum() for f in self.fixed))

    @property
    def n_free(self) -> list[int]:
        """Neurons not proved constant, per layer."""
        return [int((~f).sum()) for f in self.fixed]


def _true_literals(lits: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(H, n)`` bool: which of each neuron's literals (``lits`` in {-1, 0, +1}) are true at the bits ``v``."""
    return np.where(lits == 1, v[None, :] == 1, np.where(lits == -1, v[None, :] == 0, False))


def _count_range(lits: np.ndarray, v: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(count, down, up)``: each neuron's literal count at ``v`` and how far it can fall or rise
    when any subset of the ``free`` inputs changes value (the others stay as in ``v``)."""
    true = _true_literals(lits, v)
    present = lits != 0
    count = true.sum(1)
    down = (true & free[None, :]).sum(1)
    up = (~true & present & free[None, :]).sum(1)
    return count, down, up


def flip_bounds(net: IntegerBNN, bits: np.ndarray, k: int) -> FlipBounds:
    """Hidden neurons, and possibly the label, that no flip of at most ``k`` input bits can change.

    Sound interval reasoning over the Hamming ball ``B = {x' : |x' - bits| <= k}``, layer by layer:

    * Layer 1: a flip changes a neuron's literal count by -1, 0 or +1, and only when the flipped
      bit has a literal in that neuron; so over ``B`` the count stays within
      ``[count - min(k, t), count + min(k, f)]`` (``t``/``f``: its literals true/false at
      ``bits``). A neuron on (``count >= C``) whose lower end is still ``>= C``, or off whose
      upper end is still ``< C``, has the same value on all of ``B``: *fixed*.
    * Deeper layers: only the previous layer's unfixed neurons can change, each at most once
      (from its value at ``bits`` to the other), so a count moves down by at most the number of
      unfixed inputs whose literal is true at ``bits`` and up by at most the number whose literal
      is false; the same test fixes neurons.
    * Head: ``score_L - score_c = sum_j (W_Lj - W_cj)(2 h_j - 1)``; over every assignment of the
      unfixed last-layer neurons (a superset of what ``B`` reaches) its minimum is the fixed part
      minus ``sum |W_Lj - W_cj|`` over the unfixed ``j``. If that minimum is ``> 0`` for every
      ``c < L`` and ``>= 0`` for every ``c > L`` (torch's tie rule: the lowest index wins),
      ``L`` is the label on all of ``B``: *certified*.

    Each step only ever over-approximates the values reachable in ``B``, so "fixed" and
    "certified" are proofs; the converse does not hold (an unfixed neuron may still be constant).
    The fixed values are therefore implied by the ball constraint and may be given to a solver as
    unit assumptions without changing any answer.
    """
    x = np.asarray(bits, dtype=np.int64).reshape(-1)
    if not net.layers:
        raise ValueError("flip_bounds needs at least one hidden layer.")
    if k < 0:
        raise ValueError(f"The 'k' parameter of flip_bounds must be an int in [0, inf). Got {k} instead.")
    values, fixed = [], []
    v = x
    free = np.ones(len(x), dtype=bool)
    for layer, (lits, bounds) in enumerate(net.layers):
        count, down, up = _count_range(lits, v, free)
        if layer == 0:
            down, up = np.minimum(down, k), np.minimum(up, k)
        on = count >= bounds
        keep = np.where(on, count - down >= bounds, count + up < bounds)
        v = on.astype(np.int64)
        values.append(v)
        fixed.append(keep)
        free = ~keep
    head = net.head.astype(np.int64)
    label = int(((2 * v - 1) @ head.T).argmax())
    diff = head[label][None, :] - head  # (n_classes, H)
    worst = (diff * (2 * v - 1))[:, ~free].sum(1) - np.abs(diff[:, free]).sum(1)
    need = (np.arange(len(head)) < label).astype(np.int64)  # strict for lower indices
    ok = worst >= need
    ok[label] = True
    return FlipBounds(int(k), label, values, fixed, bool(ok.all()))


@dataclass(frozen=True)
class PatternSearch:
    """Outcome of :func:`pattern_flip_search`.

    ``indices`` are bits whose flip changes the label (None if none was found); ``complete`` is
    True when the answer is a proof (a witness, or every flip set of size <= ``k`` ruled out) and
    False when the search was not run (more than ``max_free`` free first-layer neurons), the
    branch and bound over patterns kept too many open, or the deadline passed. ``n_free`` counts the free first-layer neurons, ``n_bad`` their change
    patterns that change the label (``by_dive``: the dive found the witness, and ``n_bad`` counts the patterns it
    reached), ``nodes`` the flip sets examined (patterns solved when the linear step decided).
    """

    indices: np.ndarray | None
    complete: bool
    n_free: int
    n_bad: int = 0
    nodes: int = 0
    by_dive: bool = False


def _bad_patterns(net: IntegerBNN, fb: FlipBounds, free1: np.ndarray, *, deadline: float | None = None,
                  max_states: int = 1 << 18, need1: np.ndarray | None = None, fast: bool = True,
                  beam: int | None = None) -> np.ndarray | None:
    """Sorted codes of the change patterns of the free first-layer neurons that change the label
    (bit ``i``: neuron ``free1[i]`` differs from its value at the centre), deeper fixed neurons
    held at their values; None if more than ``max_states`` partial patterns stay open or
    ``deadline`` passes.

    Branch and bound over the neurons one at a time (largest effect on the next layer first): a
    partial pattern's undecided neurons can each still change or not, so the next layer's counts
    lie in an interval (as in :func:`flip_bounds`), deeper layers and the head follow by the same
    interval rules, and a partial pattern whose every completion keeps the label is dropped.
    Dropping is sound (the intervals cover every completion) and once every neuron is decided the
    intervals are exact, so the patterns left at the end are exactly the label-changing ones.
    The fixed neurons of every layer keep their value on the whole ball, so for every pattern the
    ball reaches the label computed here is the network's.

    With two hidden layers and ``fast`` (default) the same bound is evaluated by
    :func:`_bad_patterns_2` (int16 counts, reused buffers, one matmul per chunk; the same answer,
    about 7x faster on the 784-100-100-10 net); ``fast=False`` keeps the general float path (tests
    compare the two). ``beam`` (two hidden layers only) makes it :func:`_bad_patterns_2`'s dive: some
    label-changing patterns, not all.
    """
    m = len(free1)
    stages = []  # per deeper layer: (count change per changed free input, base counts, bounds, values)
    prev_free = free1
    for layer in range(1, len(net.layers)):
        lits, bounds = net.layers[layer]
        vp, free = fb.values[layer - 1], np.flatnonzero(~fb.fixed[layer])
        l = lits[free].astype(np.int64)
        base = _true_literals(l, vp).sum(1)
        delta = (l[:, prev_free] * (1 - 2 * vp[prev_free])[None, :]).T.astype(np.float32)  # (n_prev_free, n_free)
        stages.append((delta, base.astype(np.float32), bounds[free].astype(np.float32), fb.values[layer][free] == 1))
        prev_free = free
    head = net.head.astype(np.int64)
    vl, fixed_last = fb.values[-1], np.flatnonzero(fb.fixed[-1])
    diff = head[fb.label][None, :] - head  # score_L - score_c per last-layer neuron
    const = (diff[:, fixed_last] * (2 * vl[fixed_last] - 1)[None, :]).sum(1).astype(np.float32)
    dfree = diff[:, prev_free].T.astype(np.float32)  # (n_last_free, n_classes)
    sign_last = (2 * vl[prev_free] - 1).astype(np.float32)
    need = (np.arange(len(head)) < fb.label).astype(np.float32)  # torch's tie rule: lower index wins
    need[fb.label] = -np.inf
    # the decided neurons' effect on the next layer's counts (or, with one hidden layer, the head)
    d1 = stages[0][0] if stages else np.eye(m, dtype=np.float32)
    # with ``need1`` (each free neuron's distance to its threshold): neurons far from it first; on
    # 784-100-100-10 images this visited half the partial patterns of the effect order (141k vs 281k
    # at k = 8, 485k vs 813k at k = 10)
    order = (np.argsort(-np.asarray(need1), kind="stable") if need1 is not None
             else np.argsort(-np.abs(d1 if stages else dfree).sum(1), kind="stable"))
    if beam is not None and not (len(stages) == 1 and fast):
        raise ValueError("_bad_patterns: the dive (beam) needs two hidden layers and the fast path.")
    if len(stages) == 1 and fast:
        return _bad_patterns_2(stages[0], const, dfree, fb.label, order, deadline, max_states, beam=beam)
    up_left = np.vstack([np.cumsum(np.maximum(d1[order], 0)[::-1], 0)[::-1], np.zeros((1, d1.shape[1]), np.float32)])
    down_left = np.vstack([np.cumsum(np.maximum(-d1[order], 0)[::-1], 0)[::-1], np.zeros((1, d1.shape[1]), np.float32)])
    moved = np.zeros((1, d1.shape[1]), dtype=np.float32)  # next-layer count change of the decided neurons
    codes = np.zeros(1, dtype=np.int64)
    t_level = 0.0
    for t in range(m + 1):
        now = time.perf_counter()
        # a level costs about twice the last one (the open set at most doubles): give up before
        # starting one that would overrun the deadline by seconds (levels took up to 3 s at 2^20)
        if deadline is not None and now + 2 * t_level > deadline:
            return None
        lo, hi = moved - down_left[t], moved + up_left[t]
        if not stages:  # the free first-layer neurons feed the head: decided ones are in ``moved``
            changed, unknown = moved, np.broadcast_to((hi - lo).astype(np.float32), moved.shape)
        for s, (delta, base, bounds, values) in enumerate(stages):
            on_always, off_always = base + lo >= bounds, base + hi < bounds
            changed = ((on_always & ~values) | (off_always & values)).astype(np.float32)
            unknown = (~(on_always | off_always)).astype(np.float32)
            if s + 1 < len(stages):
                nxt = stages[s + 1][0]
                lo = changed @ nxt - unknown @ np.maximum(-nxt, 0)
                hi = changed @ nxt + unknown @ np.maximum(nxt, 0)
        # worst case of score_L - score_c: decided neurons at their value, undecided at the worse one
        worst = const[None, :] + ((1 - unknown) * (1 - 2 * changed) * sign_last[None, :]) @ dfree - unknown @ np.abs(dfree)
        open_ = ~(worst >= need[None, :]).all(1)
        moved, codes = moved[open_], codes[open_]
        if t == m or not len(codes):
            return np.sort(codes)
        if 2 * len(codes) > max_states:
            return None
        j = order[t]
        moved = np.concatenate([moved, moved + d1[j][None, :]])
        codes = np.concatenate([codes, codes | (1 << int(j))])
        t_level = time.perf_counter() - now
    return np.sort(codes)


def _bad_patterns_2(stage: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], const: np.ndarray,
                    diff_free: np.ndarray, label: int, order: np.ndarray, deadline: float | None,
                    max_states: int, chunk: int = 1 << 12, beam: int | None = None) -> np.ndarray | None:
    """:func:`_bad_patterns` for two hidden layers: the same branch and bound and the same bound.

    With ``beam``, a dive instead: each level keeps only the ``beam`` open partial patterns whose bound
    leaves some other class the most room (the lowest worst-case margin), so the codes returned are some
    of the label-changing patterns, not all of them: a witness finder, never a proof.

    ``stage`` is ``(delta, base, bounds, values)`` of the second layer's free neurons, ``const``
    and ``diff_free`` the head's fixed part and ``score_L - score_c`` per free second-layer neuron.
    A second-layer neuron is surely on when ``moved >= bounds - base + (down moves left)`` and surely
    off when ``moved < bounds - base - (up moves left)`` (integers in int16: ``moved`` is at most
    62 in size); the worst margin per class is then ``c0 + [on, off] @ W`` with
    ``W = [d + |d|; |d| - d]`` and ``c0 = const - sum |d| - need``: a known neuron contributes
    ``+-d`` by its new value, an unknown one ``-|d|`` -- exactly the general path's bound. Every
    quantity is a small integer, exact in float32.
    """
    delta, base, bounds, _ = stage
    if beam is not None:
        chunk = max(chunk, 2 * beam)
    m = delta.shape[0]
    d1 = np.rint(delta).astype(np.int16)  # (m, H2 free), entries in {-1, 0, 1}
    thr = np.rint(bounds - base).astype(np.int64)  # on iff moved >= thr
    n_cls = len(const)
    need = (np.arange(n_cls) < label).astype(np.int64)  # torch's tie rule: lower index wins
    others = np.arange(n_cls) != label
    d = diff_free[:, others].astype(np.int64)  # (H2 free, classes other than the label)
    W = np.vstack([d + np.abs(d), np.abs(d) - d]).astype(np.float32)
    c0 = (const[others].astype(np.int64) - np.abs(d).sum(0) - need[others]).astype(np.float32)
    dd = d1[order].astype(np.int64)
    zero = np.zeros((1, d1.shape[1]), dtype=np.int64)
    up_left = np.vstack([np.cumsum(np.maximum(dd, 0)[::-1], 0)[::-1], zero])
    down_left = np.vstack([np.cumsum(np.maximum(-dd, 0)[::-1], 0)[::-1], zero])
    lim = np.iinfo(np.int16)
    h = d1.shape[1]
    # the open partial patterns (second-layer count changes, codes) live in two buffers used in
    # turn and grown only when needed: each level writes the kept rows and their children straight
    # into the other buffer (a fresh concatenation per level spent half the time on page faults)
    bufs = [(np.zeros((1, h), dtype=np.int16), np.zeros(1, dtype=np.int64)), None]
    n = 1
    onoff = np.empty((max(1, min(chunk, max_states)), 2 * h), dtype=np.float32)
    t_level = 0.0
    for t in range(m + 1):
        now = time.perf_counter()
        if deadline is not None and now + 2 * t_level > deadline:
            return None
        on_at = np.clip(thr + down_left[t], lim.min, lim.max).astype(np.int16)  # surely on at or above
        off_below = np.clip(thr - up_left[t], lim.min, lim.max).astype(np.int16)  # surely off below
        last = t == m
        bit = 0 if last else 1 << int(order[t])
        cur_m, cur_c = bufs[0]
        want = n if last else min(2 * n, max_states)
        if bufs[1] is None or len(bufs[1][1]) < want:
            size = max(want, min(2 * (0 if bufs[1] is None else len(bufs[1][1])), max_states))
            bufs[1] = (np.empty((size, h), dtype=np.int16), np.empty(size, dtype=np.int64))
        nxt_m, nxt_c = bufs[1]
        pos = 0
        for s0 in range(0, n, chunk):
            mv = cur_m[s0:min(s0 + chunk, n)]
            o = onoff[:len(mv)]
            np.greater_equal(mv, on_at, out=o[:, :h], casting="unsafe")
            np.less(mv, off_below, out=o[:, h:], casting="unsafe")
            worst = o @ W
            worst += c0
            kc = (worst < 0).any(1)  # some class may still win
            nk = int(np.count_nonzero(kc))
            if beam is not None and not last and nk > beam:  # the dive: the rows with the most room to change the label
                kept = np.flatnonzero(kc)
                kc[:] = False
                kc[kept[np.argsort(worst[kept].min(1), kind="stable")[:beam]]] = True
                nk = beam
            if not nk:
                continue
            if not last and pos + 2 * nk > max_states:
                return None  # the same decision as ``2 * open > max_states`` after the level
            np.compress(kc, mv, axis=0, out=nxt_m[pos:pos + nk])
            np.compress(kc, cur_c[s0:s0 + len(mv)], out=nxt_c[pos:pos + nk])
            if not last:
                np.add(nxt_m[pos:pos + nk], d1[order[t]], out=nxt_m[pos + nk:pos + 2 * nk])
                np.bitwise_or(nxt_c[pos:pos + nk], bit, out=nxt_c[pos + nk:pos + 2 * nk])
                pos += 2 * nk
            else:
                pos += nk
        if last or not pos:
            return np.sort(nxt_c[:pos])
        bufs.reverse()
        n = pos
        t_level = time.perf_counter() - now
    return None  # not reached: the last level returns


def _moves(net: IntegerBNN, x: np.ndarray, fb: FlipBounds, free1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(need, towards)``: a free first-layer neuron changes iff the sum of ``towards[b]`` over the
    flipped bits ``b`` (+1: the flip moves its count towards the threshold, -1 away, 0 no literal)
    reaches ``need``, its distance to the threshold."""
    lits, c1 = net.layers[0]
    l = lits[free1].astype(np.int64)
    count = np.where(l == 1, x[None, :] == 1, np.where(l == -1, x[None, :] == 0, False)).sum(1)
    on = fb.values[0][free1] == 1
    need = np.where(on, count - c1[free1] + 1, c1[free1] - count)
    towards = (l * (1 - 2 * x)[None, :]).T * np.where(on, -1, 1)[None, :]  # (n, m)
    return need, towards


def _subcube_table(bad_codes: np.ndarray, q: int) -> np.ndarray:
    """``T[sum_i t_i 3^i]``: does a bad pattern agree with ``t`` on its first ``q`` bits (t_i in
    {0, 1, 2 = either})? Built from the projection by OR-ing along each axis."""
    proj = np.zeros(1 << q, dtype=bool)
    proj[bad_codes & ((1 << q) - 1)] = True
    t = proj.reshape((2,) * q, order="F")  # axis i is bit i
    for axis in range(q):
        a0, a1 = np.take(t, [0], axis=axis), np.take(t, [1], axis=axis)
        t = np.concatenate([a0, a1, a0 | a1], axis=axis)
    return t.reshape(-1, order="F")


def pattern_flip_search(net: IntegerBNN, bits: np.ndarray, k: int, *, bounds: FlipBounds | None = None,
                        max_free: int = 60, deadline: float | None = None, max_states: int = 1 << 18,
                        max_children: int = 1 << 18, lp: bool = True, dive: int | None = 1 << 14) -> PatternSearch:
    """Exact search for at most ``k`` flips that change the label, through the free first-layer neurons.

    By :func:`flip_bounds`, only the ``m`` free first-layer neurons can change within the ball, so
    the label of every input in it is a function of which of them change. (1) The change patterns
    that change the label are found by branch and bound over the neurons with interval bounds on
    the deeper layers (:func:`_bad_patterns`, at most ``max_states`` open at once): if there are
    none, no input within ``k`` flips changes the label -- a proof. (2) Otherwise flip sets are enumerated
    without repetition (bits grouped by their effect on the free neurons, multisets in class
    order), pruning every partial set from which no label-changing pattern is reachable: with
    ``r`` flips left and only the classes after the current one available, a free neuron's count
    can still move by at most ``min(r, bits left that move it that way)``, which decides for some
    neurons whether they end changed; a partial set survives only if a label-changing pattern
    agrees with those decisions (checked on up to 13 neurons by a precomputed table, and on all of
    them when few patterns change the label). The pruning only drops sets that cannot reach such
    a pattern, so a finished search is a proof, and a flip set reaching one is a witness.

    With ``lp`` (default), step (2) is first done pattern by pattern by linear reasoning over the
    flips (:func:`~netinvert.bnn._pattern_sat.realise_patterns`: exact integer certificates from
    the LP duals, a branch and bound where those fail); the listing of flip sets runs only if that
    leaves a pattern undecided. On the 784-input nets the listing took minutes at ``k`` >= 8
    where the linear step answers in one to a few LPs per pattern.

    With ``dive`` (two hidden layers and ``lp``), a witness is first looked for
    among the label-changing patterns that a beam of ``dive`` partial patterns reaches
    (:func:`_bad_patterns_2`): where ``k`` flips do change the label, a realisable pattern is often among
    those with the most room in the bound, found in a fraction of a second where the full branch and bound
    took seconds (image 11 of the dense 784-input net at ``k`` = 5: 0.3 s vs 7 s). A witness is checked like
    every other; when the dive finds none, the full search follows, so the answer is the same. Under a
    ``deadline`` the dive gets at most a quarter of the time left, so that it cannot starve a radius the full
    search would have decided.
    """
    if dive is not None and (isinstance(dive, bool) or not isinstance(dive, (int, np.integer)) or dive < 1):
        raise ValueError(f"The 'dive' parameter of pattern_flip_search must be an int >= 1 or None. Got {dive!r} instead.")
    x = np.asarray(bits, dtype=np.int64).reshape(-1)
    fb = flip_bounds(net, x, k) if bounds is None else bounds
    free1 = np.flatnonzero(~fb.fixed[0])
    m = len(free1)
    if fb.certified:
        return PatternSearch(None, True, m)
    if m > min(max_free, 62):  # patterns are int64 codes
        return PatternSearch(None, False, m)
    need, towards = _moves(net, x, fb, free1)
    if lp:
        from ._pattern_sat import realise_patterns  # imports this module
    if dive is not None and lp and len(net.layers) == 2:
        until = None if deadline is None else time.perf_counter() + 0.25 * max(deadline - time.perf_counter(), 0.0)
        leaves = _bad_patterns(net, fb, free1, deadline=until, max_states=max_states, need1=need, beam=int(dive))
        if leaves is not None and len(leaves):
            rp = realise_patterns(net, x, k, fb, free1, leaves, deadline=until)
            if rp.status is SatResult.SAT:
                return PatternSearch(rp.indices, True, m, len(leaves), rp.n_patterns, by_dive=True)
    bad_codes = _bad_patterns(net, fb, free1, deadline=deadline, max_states=max_states, need1=need)
    if bad_codes is None:
        return PatternSearch(None, False, m)
    if not len(bad_codes):
        return PatternSearch(None, True, m)
    if lp:
        rp = realise_patterns(net, x, k, fb, free1, bad_codes, deadline=deadline)
        if rp.status is not SatResult.UNKNOWN:
            return PatternSearch(rp.indices, True, m, len(bad_codes), rp.n_patterns)
    classes, inverse, mult = np.unique(towards, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    useful = np.flatnonzero(classes.any(1))  # bits moving no free neuron change nothing in the ball
    cls, mult = classes[useful].astype(np.int16), mult[useful].astype(np.int64)
    members = [np.flatnonzero(inverse == u) for u in useful]
    nc = len(cls)
    # bits available from class c onwards that move each neuron up / down
    suf_up = np.zeros((nc + 1, m), dtype=np.int64)
    suf_down = np.zeros((nc + 1, m), dtype=np.int64)
    suf_up[:nc] = np.cumsum(((cls == 1) * mult[:, None])[::-1], 0)[::-1]
    suf_down[:nc] = np.cumsum(((cls == -1) * mult[:, None])[::-1], 0)[::-1]
    pow2 = 1 << np.arange(m, dtype=np.int64)
    q = min(m, 13)
    order = np.argsort(-need, kind="stable")[:q]  # neurons needing many moves are decided first
    table = _subcube_table(_permute_codes(bad_codes, order, m), q)
    pow3 = 3 ** np.arange(q, dtype=np.int64)
    exact_list = bad_codes if len(bad_codes) <= 64 else None
    nodes = 0

    def survives(move: np.ndarray, last: np.ndarray, used: np.ndarray, r: int) -> np.ndarray:
        left_c = (mult[last] - used)[:, None]
        up = np.minimum(r, suf_up[last + 1] + left_c * (cls[last] == 1))
        down = np.minimum(r, suf_down[last + 1] + left_c * (cls[last] == -1))
        must1 = move - down >= need[None, :]
        must0 = move + up < need[None, :]
        t = np.where(must1, 1, np.where(must0, 0, 2))[:, order]
        keep = table[t @ pow3]
        if exact_list is not None and keep.any():
            m1, m0 = must1[keep] @ pow2, must0[keep] @ pow2
            hit = ((exact_list[None, :] & m1[:, None]) == m1[:, None]) & ((exact_list[None, :] & m0[:, None]) == 0)
            keep[np.flatnonzero(keep)] = hit.any(1)
        return keep

    def expand(move: np.ndarray, last: np.ndarray, used: np.ndarray, path: np.ndarray, depth: int) -> np.ndarray | None | bool:
        """Witness path (classes), None if none below these states, False on timeout."""
        nonlocal nodes
        step = max(1, max_children // max(nc, 1))
        for s0 in range(0, len(move), step):
            if deadline is not None and time.perf_counter() > deadline:
                return False
            sl = slice(s0, s0 + step)
            mv, la, us, pa = move[sl], last[sl], used[sl], path[sl]
            cidx = np.arange(nc)[None, :]
            ok = (cidx > la[:, None]) | ((cidx == la[:, None]) & (us[:, None] < mult[np.maximum(la, 0)][:, None]))
            si, ci = np.nonzero(ok)
            nodes += len(si)
            cmove = mv[si] + cls[ci]
            cused = np.where(ci == la[si], us[si] + 1, 1)
            cpath = np.concatenate([pa[si], ci[:, None]], 1)
            hit = np.flatnonzero(np.isin((cmove >= need[None, :]) @ pow2, bad_codes))
            if len(hit):
                return cpath[hit[0]]
            if depth + 1 < k:
                keep = survives(cmove, ci, cused, k - depth - 1)
                if keep.any():
                    got = expand(cmove[keep], ci[keep], cused[keep], cpath[keep], depth + 1)
                    if got is not None:
                        return got
        return None

    root = np.zeros((1, m), dtype=np.int64)
    got = expand(root, np.array([-1]), np.array([0]), np.zeros((1, 0), dtype=np.int64), 0)
    if got is False:
        return PatternSearch(None, False, m, len(bad_codes), nodes)
    if got is None:
        return PatternSearch(None, True, m, len(bad_codes), nodes)
    chosen, counts = np.unique(got, return_counts=True)
    idx = np.sort(np.concatenate([members[c][:n] for c, n in zip(chosen, counts)]))
    return PatternSearch(idx, True, m, len(bad_codes), nodes)


def _permute_codes(codes: np.ndarray, order: np.ndarray, m: int) -> np.ndarray:
    """Codes with bit ``order[i]`` moved to bit ``i`` (the table's neurons first)."""
    out = np.zeros_like(codes)
    for i, j in enumerate(order):
        out |= ((codes >> int(j)) & 1) << i
    return out
