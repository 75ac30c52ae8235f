"""Model counting of preimages, projected on the input variables, with a hard time limit.

``exact`` uses Ganak (pyganak) and ``approx`` ApproxMC (pyapproxmc, PAC guarantee: the estimate is
within a factor ``1 + epsilon`` of the true count with probability ``>= 1 - delta``). Both count
``BNN(X, H, Y) and y_label`` projected on ``X``. (Every auxiliary variable of our encodings is a
function of the inputs, so the projected and unprojected counts agree; projecting keeps the count
exact for any encoding.) Neither counter can be stopped, so each runs in a forked child process
killed at the time limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .._registry import Registry
from ._encode import Encoding
from ._solve import SatResult, run_streaming

__all__ = ["CountResult", "COUNTERS", "list_counters", "count_preimages"]


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
