"""Model counting of preimages, projected on the input variables, with a hard time limit.

``exact`` uses Ganak (pyganak) and ``approx`` ApproxMC (pyapproxmc, PAC guarantee: the estimate is
within a factor ``1 + epsilon`` of the true count with probability ``>= 1 - delta``). Both count
``BNN(X, H, Y) and y_label`` projected on ``X``. (Every auxiliary variable of our encodings is a
function of the inputs, so the projected and unprojected counts agree; projecting keeps the count
exact for any encoding.) Neither counter can be stopped, so each runs in a forked child process
killed at the time limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._registry import Registry
from ._encode import Encoding
from ._export import IntegerBNN
from ._solve import SatResult, run_streaming

__all__ = ["CountResult", "COUNTERS", "list_counters", "count_preimages", "count_all_labels"]


@dataclass(frozen=True)
class CountResult:
    """``count`` preimages of ``label`` (``None`` when the counter ran out of time)."""

    label: int
    count: int | None
    exact: bool
    status: SatResult
    seconds: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "count": self.count, "exact": self.exact, "status": self.status.value,
                "seconds": self.seconds, "method": self.method}


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


#: name -> (counter generator, exact?)
COUNTERS: Registry[tuple[Callable[..., Iterator[int]], bool]] = Registry("model counter")
COUNTERS.add("exact", (_ganak, True))
COUNTERS.add("approx", (_approxmc, False))


def list_counters() -> list[str]:
    return COUNTERS.names()


def count_preimages(encoding: Encoding, label: int, *, method: str = "exact", time_s: float | None = 60.0,
                    epsilon: float = 0.8, delta: float = 0.2, seed: int = 1) -> CountResult:
    """Count the inputs the network labels ``label``, projected on the input variables.

    Parameters
    ----------
    encoding : Encoding
        A clausal encoding (the ``native`` one cannot be read by counters).
    label : int
    method : {"exact", "approx"}
    time_s : float or None
        Wall-clock limit; on expiry the counter is killed and ``status`` is UNKNOWN.
    epsilon, delta : float
        ApproxMC's tolerance and confidence (``approx`` only).
    seed : int
    """
    fn, exact = COUNTERS.get(method)
    if encoding.native:
        raise ValueError("Model counters read CNF only; encode with a clausal encoding (seqcounter, sortnet, totalizer), not 'native'.")
    k = encoding.net.n_classes
    if not 0 <= int(label) < k:
        raise ValueError(f"The 'label' parameter of count_preimages must be an int in [0, {k - 1}]. Got {label} instead.")
    clauses = [*encoding.formula.clauses, [encoding.outputs[int(label)]]]
    params = {"epsilon": epsilon, "delta": delta, "seed": seed}
    items, finished, seconds = run_streaming(fn, (clauses, list(encoding.inputs), encoding.n_vars, params), time_s)
    if not finished:
        return CountResult(int(label), None, exact, SatResult.UNKNOWN, seconds, method)
    count = items[0]
    return CountResult(int(label), count, exact, SatResult.SAT if count else SatResult.UNSAT, seconds, method)


def count_all_labels(net: IntegerBNN, *, max_states: int = 20_000_000, time_s: float | None = 60.0) -> list[CountResult]:
    """Exact preimage counts of *every* label in one pass, by dynamic programming over the inputs.

    The first layer is read one input at a time; the state is, per first-layer neuron, how many
    more true literals it needs, clamped to "already on" (0) and "can no longer switch on"
    (remaining + 1), and identical states are merged with their counts added. After the last
    input the state *is* the first hidden layer, whose label the integer net gives. No SAT
    encoding is involved, so it cross-checks Ganak; the counts sum to ``2 ** n_inputs`` by
    construction. The number of states can grow like ``2 ** (n / 2)``: on random 24-input,
    12-neuron nets it took ~2 s where Ganak needed > 60 s for ten labels, but the 49-20-10
    Fashion net passed 50 million states. When ``max_states`` or ``time_s`` is exceeded every
    result is UNKNOWN with ``count=None``.

    Returns
    -------
    list of CountResult
        One per label, ``method="dp"``, ``exact=True``.
    """
    if not net.layers:
        raise ValueError("count_all_labels needs a net with at least one hidden layer.")
    n = net.n_inputs
    if n > 64:
        raise ValueError(f"count_all_labels keeps counts in uint64: at most 64 inputs. Got {n} instead.")
    t0 = time.perf_counter()
    lits, bounds = net.layers[0]
    lits = lits.astype(np.int8)
    width = lits.shape[0]
    # residuals lie in [0, 65] for <= 64 inputs: int8 states keep the memory at width bytes each
    remaining = np.concatenate([(lits != 0)[:, ::-1].cumsum(1)[:, ::-1], np.zeros((width, 1), dtype=np.int64)], 1).astype(np.int8)
    states = np.clip(bounds, 0, remaining[:, 0].astype(np.int64) + 1).astype(np.int8)[None, :]
    counts = np.ones(1, dtype=np.uint64)

    def unknown() -> list[CountResult]:
        secs = time.perf_counter() - t0
        return [CountResult(k, None, True, SatResult.UNKNOWN, secs, "dp") for k in range(net.n_classes)]

    for t in range(n):
        on, off = (lits[:, t] > 0).astype(np.int8), (lits[:, t] < 0).astype(np.int8)  # literal true for bit 1 / 0
        nxt = np.clip(np.concatenate([states - off[None], states - on[None]]), 0, remaining[:, t + 1] + 1)
        both = np.concatenate([counts, counts])
        key = np.ascontiguousarray(nxt).view(np.dtype((np.void, width))).ravel()
        order = np.argsort(key, kind="stable")
        sorted_keys = key[order]
        first = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        states, counts = nxt[order[first]], np.add.reduceat(both[order], first)
        if len(states) > max_states or (time_s is not None and time.perf_counter() - t0 > time_s):
            return unknown()
    labels = net.predict(states == 0, start=1)  # 0 more literals needed: the first-layer neuron is on
    totals = [0] * net.n_classes
    for k, c in zip(labels.tolist(), counts.tolist()):
        totals[k] += int(c)
    secs = time.perf_counter() - t0
    return [CountResult(k, c, True, SatResult.SAT if c else SatResult.UNSAT, secs, "dp") for k, c in enumerate(totals)]
