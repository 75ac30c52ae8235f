"""Model counting of preimages, projected on the input variables, with a hard time limit.

One entry point, :func:`count_preimages`, over a registry of methods (:func:`list_counters`):
``exact`` uses Ganak (pyganak) and ``approx`` ApproxMC (pyapproxmc, PAC guarantee: the estimate is
within a factor ``1 + epsilon`` of the true count with probability ``>= 1 - delta``). Both count
``BNN(X, H, Y) and y_label`` projected on ``X``. (Every auxiliary variable of our encodings is a
function of the inputs, so the projected and unprojected counts agree; projecting keeps the count
exact for any encoding.) Neither counter can be stopped, so each runs in a forked child process
killed at the time limit, in its own process group, dying with its parent and under its own CPU-time
and memory limits (:func:`netinvert.bnn.run_streaming`). ``dp`` counts every label exactly without SAT (:func:`count_all_labels`)
``factored`` does the same by input groups, independent neuron blocks and dead classes
(:func:`~netinvert.bnn._factored.count_labels_factored`), and ``sampled`` estimates from uniform inputs
(:func:`estimate_label_shares`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from .._progress import progress_bar

from .._registry import Registry
from ._encode import Encoding
from ._estimate import estimate_label_shares
from ._export import IntegerBNN
from ._solve import SatResult, run_streaming

__all__ = ["CountResult", "CountMethod", "COUNTERS", "list_counters", "count_preimages", "count_all_labels", "dp_input_order"]


@dataclass(frozen=True)
class CountResult:
    """``count`` preimages of ``label`` by ``method`` (``None`` when the method ran out of time or states).

    The per-method fields are ``None`` where a method does not set them: ``all_labels`` (``dp`` and
    ``sampled`` answer every label in one pass), ``epsilon``/``delta`` (``approx``), and ``hits``,
    ``n_samples``, ``share``, ``low``, ``high``, ``confidence`` (``sampled``: ``count`` is the
    estimate ``share * 2 ** n_inputs`` and ``[low, high]`` the Wilson interval of the share).
    """

    label: int
    count: int | None
    exact: bool
    status: SatResult
    seconds: float
    method: str
    n_inputs: int
    all_labels: tuple[int | None, ...] | None = None
    epsilon: float | None = None
    delta: float | None = None
    hits: int | None = None
    n_samples: int | None = None
    share: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if v is not None or k == "count"}
        d["status"] = self.status.value
        if self.all_labels is not None:
            d["all_labels"] = list(self.all_labels)
        return d


def _ganak(clauses: list[list[int]], projection: list[int], n_vars: int, params: dict[str, Any]) -> Iterator[int]:
    try:
        import pyganak
    except ImportError as exc:
        raise ImportError("Exact counting needs pyganak: pip install pyganak") from exc
    c = pyganak.Counter(seed=int(params.get("seed", 0)))
    c.new_vars(n_vars)
    c.add_clauses(clauses)
    c.set_sampling_set(projection)
    yield int(c.count())


def _approxmc(clauses: list[list[int]], projection: list[int], n_vars: int, params: dict[str, Any]) -> Iterator[int]:
    try:
        import pyapproxmc
    except ImportError as exc:
        raise ImportError("Approximate counting needs pyapproxmc: pip install pyapproxmc") from exc
    c = pyapproxmc.Counter(seed=int(params.get("seed", 1)), epsilon=float(params.get("epsilon", 0.8)),
                           delta=float(params.get("delta", 0.2)))
    c.add_clauses(clauses)
    cells, hashes = c.count(projection)
    yield int(cells) * 2 ** int(hashes)


@dataclass(frozen=True)
class CountMethod:
    """A counting method: its function ``(target, label, time_s, params) -> CountResult``, whether it
    needs a clausal :class:`Encoding` (else it reads the integer net), and its default budget."""

    name: str
    fn: Callable[..., CountResult]
    needs_cnf: bool
    default_time_s: float | None
    description: str


COUNTERS: Registry[CountMethod] = Registry("counting method")


def list_counters() -> list[str]:
    """Names of the methods :func:`count_preimages` accepts."""
    return COUNTERS.names()


def _model_counter(fn: Callable[..., Iterator[int]], exact: bool) -> Callable[..., CountResult]:
    def count(encoding: Encoding, label: int, time_s: float | None, p: dict[str, Any]) -> CountResult:
        method = "exact" if exact else "approx"
        extra = {} if exact else {"epsilon": float(p["epsilon"]), "delta": float(p["delta"])}
        n = len(encoding.inputs)
        clauses = [*encoding.formula.clauses, [encoding.outputs[label]]]
        # ApproxMC counted 2^8 too few on a net with 8 unread inputs: count on the inputs that occur
        # and double the count for each one that does not.
        projection = [encoding.inputs[i] for i in encoding.read_inputs()]
        free = n - len(projection)
        if not projection:  # no input is read: the net is constant
            label_of_all = int(encoding.net.predict(np.zeros((1, n), dtype=np.int8))[0])
            c = 2 ** free if label_of_all == label else 0
            return CountResult(label, c, True, SatResult.SAT if c else SatResult.UNSAT, 0.0, method, n, **extra)
        params = {"epsilon": p["epsilon"], "delta": p["delta"], "seed": p["seed"]}
        items, finished, seconds = run_streaming(fn, (clauses, projection, encoding.n_vars, params), time_s,
                                                 memory_gb=p["memory_gb"], cpu_seconds=p["cpu_seconds"])
        if not finished:
            return CountResult(label, None, exact, SatResult.UNKNOWN, seconds, method, n, **extra)
        c = items[0] << free
        return CountResult(label, c, exact, SatResult.SAT if c else SatResult.UNSAT, seconds, method, n, **extra)

    return count


def _dp(net: IntegerBNN, label: int, time_s: float | None, p: dict[str, Any]) -> CountResult:
    rows = count_all_labels(net, max_states=int(p["max_states"]), time_s=time_s, progress=bool(p["progress"]))
    counts = tuple(r.count for r in rows)
    r = rows[label]
    return CountResult(label, r.count, True, r.status, r.seconds, "dp", net.n_inputs, all_labels=counts)


def _factored(net: IntegerBNN, label: int, time_s: float | None, p: dict[str, Any]) -> CountResult:
    from ._factored import count_labels_factored

    counts, info = count_labels_factored(net, max_states=int(p["max_states"]), time_s=time_s, progress=bool(p["progress"]))
    secs = info.get("seconds", 0.0)
    if counts is None:
        return CountResult(label, None, True, SatResult.UNKNOWN, secs, "factored", net.n_inputs)
    c = counts[label]
    return CountResult(label, c, True, SatResult.SAT if c else SatResult.UNSAT, secs, "factored", net.n_inputs,
                       all_labels=tuple(counts))


def _sampled(net: IntegerBNN, label: int, time_s: float | None, p: dict[str, Any]) -> CountResult:
    t0 = time.perf_counter()
    shares = estimate_label_shares(net, int(p["n_samples"]), confidence=float(p["confidence"]), seed=int(p["seed"]))
    s = shares[label]
    # an estimate proves nothing: a label never drawn may still own inputs
    return CountResult(label, s.count_estimate, False, SatResult.SAT if s.hits else SatResult.UNKNOWN,
                       time.perf_counter() - t0, "sampled", net.n_inputs,
                       all_labels=tuple(x.count_estimate for x in shares), hits=s.hits, n_samples=s.n_samples,
                       share=s.share, low=s.low, high=s.high, confidence=float(p["confidence"]))


for _m in (
    CountMethod("exact", _model_counter(_ganak, True), True, 60.0, "Ganak, projected on the inputs"),
    CountMethod("approx", _model_counter(_approxmc, False), True, 60.0,
                "ApproxMC: within a factor 1 + epsilon with probability >= 1 - delta"),
    CountMethod("dp", _dp, False, 900.0, "exact, every label at once, by dynamic programming over the inputs (no SAT)"),
    CountMethod("factored", _factored, False, 900.0,
                "exact, every label at once: input groups, independent neuron blocks, dead classes (one hidden layer)"),
    CountMethod("sampled", _sampled, False, None, "share of uniform random inputs, with a Wilson interval (no solver)"),
):
    COUNTERS.add(_m.name, _m)


def count_preimages(target: Encoding | IntegerBNN, label: int, *, method: str = "exact", time_s: float | None = None,
                    epsilon: float = 0.8, delta: float = 0.2, seed: int = 1, n_samples: int = 1_000_000,
                    confidence: float = 0.99, max_states: int = 20_000_000, progress: bool = False,
                    memory_gb: float | None = None, cpu_seconds: float | None = None) -> CountResult:
    """Count the inputs the network labels ``label`` (projected on the input variables).

    Parameters
    ----------
    target : Encoding or IntegerBNN
        ``exact`` and ``approx`` read a clausal :class:`Encoding` (the ``native`` one cannot be
        read by counters); ``dp`` and ``sampled`` read the integer net (an Encoding's ``net`` is used).
    label : int
    method : str
        One of :func:`list_counters`: ``exact`` (Ganak), ``approx`` (ApproxMC, PAC), ``dp`` (exact,
        every label at once, by :func:`count_all_labels`; nets with a small fan-in), ``factored`` (exact,
        every label at once, one hidden layer: inputs with equal columns are read as one group, neurons
        that share no input are counted block by block, classes that can no longer win are dropped;
        nets whose first layer reads the image in disjoint blocks), ``sampled``
        (an estimate from ``n_samples`` uniform inputs, :func:`estimate_label_shares`).
    time_s : float or None
        Wall-clock limit; on expiry the result is UNKNOWN with ``count=None``. ``None``: the
        method's default (60 s for ``exact``/``approx``, 900 s for ``dp`` and ``factored``; ``sampled`` has none);
        ``math.inf``: unlimited.
    epsilon, delta : float
        ApproxMC's tolerance and confidence (``approx`` only).
    seed : int
        Seed of the counter (``exact``, ``approx``) or of the draws (``sampled``).
    n_samples, confidence : int, float
        ``sampled`` only: draws and the level of the interval.
    max_states, progress : int, bool
        ``dp`` and ``factored``: state limit (UNKNOWN beyond it) and a progress bar.
    memory_gb, cpu_seconds : float or None
        ``exact`` and ``approx`` only: limits of the counter's child process, which dies with this
        one. ``memory_gb``: address space beyond what the child inherits at fork (``None``: 8 GiB);
        ``cpu_seconds``: CPU time (``None``: the budget plus ``max(10 s, budget / 10)``, unlimited
        with an unlimited budget); ``math.inf`` lifts either. A counter that hits one raises
        ``RuntimeError`` naming the limit.

    Returns
    -------
    CountResult

    Raises
    ------
    ValueError
        A parameter is out of range (checked before any counting).
    """
    from ._solve import budget_seconds, child_limits

    m = COUNTERS.get(method)
    if isinstance(target, Encoding):
        net = target.net
    elif isinstance(target, IntegerBNN):
        net = target
    else:
        raise TypeError(f"The 'target' parameter of count_preimages must be an Encoding or an IntegerBNN. Got {type(target).__name__} instead.")
    if m.needs_cnf:
        if not isinstance(target, Encoding):
            raise TypeError(f"Counting by {method!r} reads CNF: pass encode(net), not the integer net.")
        if target.native:
            raise ValueError("Model counters read CNF only; encode with a clausal encoding (seqcounter, sortnet, totalizer), not 'native'.")
    k = net.n_classes
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < k:
        raise ValueError(f"The 'label' parameter of count_preimages must be an int in [0, {k - 1}]. Got {label} instead.")
    own = "count_preimages"
    _want(epsilon > 0, own, "epsilon", "a float in (0, inf)", epsilon)
    _want(0 < delta < 1, own, "delta", "a float in (0, 1)", delta)
    _want(_int(n_samples) and n_samples >= 1, own, "n_samples", "an int in [1, inf)", n_samples)
    _want(0 < confidence < 1, own, "confidence", "a float in (0, 1)", confidence)
    _want(_int(max_states) and max_states >= 1, own, "max_states", "an int in [1, inf)", max_states)
    budget = budget_seconds(m.default_time_s if time_s is None else time_s)
    child_limits(budget, memory_gb=memory_gb, cpu_seconds=cpu_seconds)  # refuse bad limits before counting
    params = {"epsilon": epsilon, "delta": delta, "seed": seed, "n_samples": n_samples, "confidence": confidence,
              "max_states": max_states, "progress": progress, "memory_gb": memory_gb, "cpu_seconds": cpu_seconds}
    return m.fn(target if m.needs_cnf else net, int(label), budget, params)


def _int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _want(cond: bool, owner: str, name: str, want: str, got: Any) -> None:
    if not cond:
        raise ValueError(f"The {name!r} parameter of {owner} must be {want}. Got {got!r} instead.")


def dp_input_order(lits: np.ndarray) -> list[int]:
    """The order in which :func:`count_all_labels` reads the inputs that some first-layer neuron reads.

    Neuron by neuron: next is the unfinished neuron with the fewest unread inputs (ties: the one
    with the most inputs already read), and its unread inputs follow, those shared with the most
    other unfinished neurons first. Finishing neurons early is what keeps the DP small: a finished
    neuron leaves the state (its bit is folded into the scores), while every neuron that has read
    some inputs but not all keeps a partial count. On a 49-20 layer with 12 inputs per neuron this
    order peaked at 11 million states where the plain input order ran past 40 million.
    """
    used = lits != 0
    read = np.zeros(lits.shape[1], dtype=bool)
    done = ~used.any(1)
    order: list[int] = []
    while not done.all():
        unread = (used & ~read).sum(1)
        started = (used & read).sum(1)
        j = min(np.flatnonzero(~done), key=lambda i: (unread[i], -started[i], i))
        new = np.flatnonzero(used[j] & ~read)
        shared = used[~done][:, new].sum(0)
        new = new[np.argsort(-shared, kind="stable")]
        order += new.tolist()
        read[new] = True
        done |= ~(used & ~read).any(1)
    return order


def count_all_labels(net: IntegerBNN, *, max_states: int = 20_000_000, time_s: float | None = 60.0,
                     progress: bool = False) -> list[CountResult]:
    """Exact preimage counts of *every* label in one pass, by dynamic programming over the inputs.

    The first layer is read one input at a time, in :func:`dp_input_order`; the state holds, per
    first-layer neuron that has read some but not all of its inputs, how many more true literals
    it needs, clamped to "already on" (0) and "can no longer switch on" (remaining + 1), and
    identical states are merged with their counts added. On a net with one hidden layer a neuron
    that has read all its inputs leaves the state: its +-1 is added to the class scores, kept
    relative to class 0 (argmax ignores a common shift). Deeper nets keep finished neurons' bits
    and run the rest of the net on them at the end. Inputs no neuron reads only double every
    count. No SAT encoding is involved, so it cross-checks Ganak; the counts sum to
    ``2 ** n_inputs`` by construction (checked). The state count grows like ``2 ** w`` where
    ``w`` is the number of inputs read by unfinished neurons: dense layers (every neuron reads
    every input, the 49-20-10 Fashion net passed 50 million states) are out of reach, layers
    trained with a small ``fan_in`` are not. When ``max_states`` or ``time_s`` is exceeded every
    result is UNKNOWN with ``count=None``.

    Returns
    -------
    list of CountResult
        One per label, ``method="dp"``, ``exact=True``.
    """
    if not net.layers:
        raise ValueError("count_all_labels needs a net with at least one hidden layer.")
    t0 = time.perf_counter()
    lits, bounds = net.layers[0]
    order = dp_input_order(lits)
    if len(order) > 64:
        raise ValueError(f"count_all_labels keeps counts in uint64: at most 64 inputs read by the first layer. Got {len(order)} instead.")
    width = lits.shape[0]
    lits = lits[:, order].astype(np.int8)
    # residuals lie in [0, 65] for <= 64 inputs: int8 states keep the memory at a byte a neuron
    remaining = np.concatenate([(lits != 0)[:, ::-1].cumsum(1)[:, ::-1], np.zeros((width, 1), dtype=np.int64)], 1).astype(np.int8)
    states = np.clip(bounds, 0, remaining[:, 0].astype(np.int64) + 1).astype(np.int8)[None, :]
    counts = np.ones(1, dtype=np.uint64)
    fold = len(net.layers) == 1
    head = net.head.astype(np.int16)
    scores = np.zeros((1, net.n_classes if fold else 0), dtype=np.int16)
    alive = np.ones(width, dtype=bool)  # first-layer neurons whose residual is in the state
    bar = progress_bar(total=len(order), desc="count (dp)", enabled=progress)

    def unknown() -> list[CountResult]:
        bar.close()
        secs = time.perf_counter() - t0
        return [CountResult(k, None, True, SatResult.UNKNOWN, secs, "dp", net.n_inputs) for k in range(net.n_classes)]

    for t in range(len(order) + 1):  # t = len(order): fold the neurons that read no input at all
        if t < len(order):
            on, off = (lits[alive, t] > 0).astype(np.int8), (lits[alive, t] < 0).astype(np.int8)
            states = np.clip(np.concatenate([states - off, states - on]), 0, remaining[alive, t + 1] + 1)
            scores, counts = np.concatenate([scores, scores]), np.concatenate([counts, counts])
        if fold:
            finished = remaining[alive, min(t + 1, len(order))] == 0
            if finished.any():
                done = np.flatnonzero(alive)[finished]
                bits = (states[:, finished] == 0).astype(np.int16)  # 0 more literals needed: on
                scores = scores + (2 * bits - 1) @ head[:, done].T
                scores -= scores[:, :1]
                states = states[:, ~finished]
                alive[done] = False
        rows = np.ascontiguousarray(np.concatenate([states.view(np.uint8), scores.view(np.uint8)], 1))
        key = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()
        idx = np.argsort(key, kind="stable")
        sorted_keys = key[idx]
        first = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        states, scores, counts = states[idx[first]], scores[idx[first]], np.add.reduceat(counts[idx], first)
        bar.update(int(t < len(order)))
        bar.set_postfix(states=len(states))
        if len(states) > max_states or (time_s is not None and time.perf_counter() - t0 > time_s):
            return unknown()
    bar.close()
    labels = scores.argmax(1) if fold else net.predict(states == 0, start=1)
    # uint64 sums are exact unless one label holds all 2^64 inputs of a 64-input layer, where they wrap to 0
    totals = [int(counts[labels == k].sum(dtype=np.uint64)) for k in range(net.n_classes)]
    if len(order) == 64 and (labels == labels[0]).all():
        totals[int(labels[0])] = 2**64
    if sum(totals) != 2 ** len(order):
        raise RuntimeError("count_all_labels: the counts do not add up to the number of inputs; please report this net.")
    totals = [c << (net.n_inputs - len(order)) for c in totals]
    secs = time.perf_counter() - t0
    return [CountResult(k, c, True, SatResult.SAT if c else SatResult.UNSAT, secs, "dp", net.n_inputs)
            for k, c in enumerate(totals)]
