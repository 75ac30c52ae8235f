"""SAT solving with a hard time budget: three-way results, interruptible and subprocess back ends.

Glucose, MiniSat, Minicard and Gluecard stop within milliseconds of ``interrupt()``, so a
``threading.Timer`` enforces their budget in-process (the solver keeps its learnt clauses between
calls: incremental solving with assumptions). PySAT's CaDiCaL ignores ``interrupt()`` and the model
counters and CMSGen have no reliable limit (METHODS.md section 5), so those run in a forked child
process that is killed when the budget runs out: a call never hangs.

A child never outlives its parent and never runs without limits (:func:`run_streaming`): it leads
its own process group, which the parent kills (SIGKILL) on every way out of the call, including
``KeyboardInterrupt`` (the CLI turns SIGTERM into one); on Linux it also asks the kernel for SIGKILL
when the parent dies (``PR_SET_PDEATHSIG``), which covers a SIGKILLed parent; and it carries its own
CPU-time limit (``RLIMIT_CPU``: the wall-clock budget plus a margin) and address-space limit
(``RLIMIT_AS``: what it inherits at fork plus ``memory_gb``, 8 GiB by default).
"""

from __future__ import annotations

import ctypes
import enum
import math
import multiprocessing as mp
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pysat.formula import IDPool
from pysat.solvers import Solver

from .._registry import Registry
from ..exceptions import SolverLimitError
from ._encode import Encoding

__all__ = ["SatResult", "SolverSpec", "SOLVERS", "list_solvers", "default_solver", "resolve_solver", "SolveOutcome",
           "BudgetedSolver", "ChildLimits", "child_limits", "run_streaming", "DEFAULT_MEMORY_GB"]


class SatResult(enum.Enum):
    """Outcome of a query: an answer (``SAT``/``UNSAT``) or ``UNKNOWN`` when the budget ran out."""

    SAT = "sat"
    UNSAT = "unsat"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SolverSpec:
    """A PySAT back end: its PySAT name, whether ``interrupt()`` works, and native cardinality."""

    name: str
    pysat_name: str
    interruptible: bool
    native_cardinality: bool


SOLVERS: Registry[SolverSpec] = Registry("SAT solver")
for _spec in (
    SolverSpec("glucose4", "glucose4", True, False),
    SolverSpec("glucose3", "glucose3", True, False),
    SolverSpec("minisat22", "minisat22", True, False),
    SolverSpec("maplechrono", "maplechrono", True, False),
    SolverSpec("minicard", "minicard", True, True),
    SolverSpec("gluecard4", "gluecard4", True, True),
    SolverSpec("cadical153", "cadical153", False, False),
):
    SOLVERS.add(_spec.name, _spec)


def list_solvers() -> list[str]:
    """Solver names accepted by :class:`BudgetedSolver` and :class:`SatInverter` (besides ``"auto"``)."""
    return SOLVERS.names()


def default_solver(encoding: Encoding) -> str:
    """The solver ``"auto"`` stands for: ``minicard`` for the native encoding (it needs native
    cardinality constraints), ``glucose4`` for the clausal ones."""
    return "minicard" if encoding.native else "glucose4"


def resolve_solver(solver: str, encoding: Encoding) -> str:
    """``solver`` itself, or :func:`default_solver` for ``"auto"``; an unknown name lists the valid ones."""
    name = default_solver(encoding) if solver == "auto" else solver
    SOLVERS.get(name)
    return name


@dataclass(frozen=True)
class SolveOutcome:
    """One solver call: status, model (``None`` unless SAT), seconds and conflicts spent."""

    status: SatResult
    model: list[int] | None
    seconds: float
    conflicts: int = 0


def _fork_context() -> Any:
    # fork: the child inherits the (possibly huge) formula without pickling it
    return mp.get_context("fork")


#: Address space a solver or counter child may add to what it inherits at fork (RLIMIT_AS), in GiB.
DEFAULT_MEMORY_GB = 8.0

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class ChildLimits:
    """Limits a solver or counter child sets on itself: ``cpu_seconds`` (``RLIMIT_CPU``) and
    ``memory_gb`` (``RLIMIT_AS`` above the address space inherited at fork); ``None``: unlimited."""

    cpu_seconds: int | None
    memory_gb: float | None


def child_limits(time_s: float | None, *, cpu_seconds: float | None = None,
                 memory_gb: float | None = DEFAULT_MEMORY_GB) -> ChildLimits:
    """The limits of a child given its wall-clock budget ``time_s`` (``None``: unlimited).

    ``cpu_seconds=None`` derives the CPU-time limit from the budget: ``time_s + max(10, time_s / 10)``
    seconds, rounded up (unlimited with an unlimited budget); the solvers are single-threaded, so it
    only fires when the wall-clock kill did not happen. ``memory_gb=None`` is the default
    (:data:`DEFAULT_MEMORY_GB`). ``math.inf`` lifts either limit.
    """
    if cpu_seconds is not None and not cpu_seconds > 0:
        raise ValueError(f"The 'cpu_seconds' parameter must be None or a float in (0, inf]. Got {cpu_seconds!r} instead.")
    if memory_gb is not None and not memory_gb > 0:
        raise ValueError(f"The 'memory_gb' parameter must be None or a float in (0, inf]. Got {memory_gb!r} instead.")
    if cpu_seconds is None:
        cpu = None if time_s is None or math.isinf(time_s) else math.ceil(time_s + max(10.0, time_s / 10))
    else:
        cpu = None if math.isinf(cpu_seconds) else math.ceil(cpu_seconds)
    mem = DEFAULT_MEMORY_GB if memory_gb is None else memory_gb
    return ChildLimits(cpu, None if math.isinf(mem) else float(mem))


def _vm_size() -> int:
    """This process's address space in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def _lower(which: int, value: int) -> None:
    """Set a resource limit to ``value`` (soft and hard), never above the inherited hard limit."""
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _enter_child(parent_pid: int, limits: ChildLimits) -> None:
    """First thing a solver child does: own group, die with the parent, default signals, limits."""
    os.setpgid(0, 0)  # its own group: the parent's killpg reaches anything the solver starts
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    # the CLI's SIGTERM handler (inherited by fork) only sets a flag native code never reads
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU):
        signal.signal(sig, signal.SIG_DFL)
    _lower(resource.RLIMIT_CORE, 0)  # a limit's signal must not leave a core file in the working folder
    if limits.cpu_seconds is not None:
        # SIGXCPU at the limit (its default action kills); SIGKILL a second later as a backstop
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        want = limits.cpu_seconds
        cap = hard if hard != resource.RLIM_INFINITY else want + 1
        resource.setrlimit(resource.RLIMIT_CPU, (min(want, cap), min(want + 1, cap)))
    if limits.memory_gb is not None:
        _lower(resource.RLIMIT_AS, _vm_size() + int(limits.memory_gb * 2**30))


def _stream_child(conn: Any, fn: Callable[..., Iterator[Any]], args: tuple, parent_pid: int, limits: ChildLimits) -> None:
    try:
        _enter_child(parent_pid, limits)
        for item in fn(*args):
            conn.send(("item", item))
        conn.send(("done", None))
    except BaseException as exc:  # report to the parent, which re-raises
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _death(exitcode: int | None, limits: ChildLimits) -> str:
    """Why a child ended without an answer, and which limit to raise."""
    if exitcode is not None and exitcode < 0:
        how = f"killed by {signal.Signals(-exitcode).name}"
    else:
        how = f"exit code {exitcode}"
    if exitcode == -signal.SIGXCPU:
        return f"The solver subprocess hit its CPU-time limit of {limits.cpu_seconds} s ({how}); raise cpu_seconds."
    mem = "no memory limit" if limits.memory_gb is None else f"a memory limit of {limits.memory_gb:g} GiB (memory_gb)"
    return (f"The solver subprocess died without an answer ({how}); it ran with {mem} and may have run out "
            f"of memory.")


def _kill_group(proc: Any) -> None:
    """SIGKILL the child's process group (the child leads it), then reap the child."""
    if proc.pid is None:  # never started
        return
    if proc.exitcode is None:  # not reaped yet, so its pid (the group's id) is not reused
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # no such group: setpgid failed, the child is still in ours
            proc.kill()
    proc.join()


def run_streaming(fn: Callable[..., Iterator[Any]], args: tuple, time_s: float | None, *,
                  cpu_seconds: float | None = None,
                  memory_gb: float | None = DEFAULT_MEMORY_GB) -> tuple[list[Any], bool, float]:
    """Run generator ``fn(*args)`` in a forked child; collect its items until done or ``time_s``.

    Returns ``(items, finished, seconds)``. The child is killed when the budget runs out, so
    uninterruptible native code (CaDiCaL, Ganak, ApproxMC, CMSGen) cannot hang the caller.

    The child leads its own process group, which is SIGKILLed on every way out of this call
    (an answer, the budget, an error, ``KeyboardInterrupt``); on Linux the kernel also SIGKILLs it
    when the calling thread's process dies (``PR_SET_PDEATHSIG``, which covers SIGKILL of the
    parent). It runs under ``RLIMIT_CPU`` and ``RLIMIT_AS`` from :func:`child_limits`
    (``cpu_seconds``: default the budget plus a margin; ``memory_gb``: address space beyond what
    it inherits at fork, default :data:`DEFAULT_MEMORY_GB`; ``math.inf`` lifts either).

    Raises
    ------
    SolverLimitError
        The child died (a limit, the OOM killer) without an answer; the message names the limit.
    RuntimeError
        The child reported an error.
    """
    limits = child_limits(time_s, cpu_seconds=cpu_seconds, memory_gb=memory_gb)
    ctx = _fork_context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_stream_child, args=(child, fn, args, os.getpid(), limits), daemon=True)
    t0 = time.perf_counter()
    items: list[Any] = []
    finished = False
    deadline = None if time_s is None else t0 + time_s
    try:
        proc.start()
        child.close()
        try:
            os.setpgid(proc.pid, proc.pid)  # also here, so no kill can come before the child's own call
        except (PermissionError, ProcessLookupError):  # the child got there first, or already ended
            pass
        while True:
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                break
            if not parent.poll(left):
                break
            try:
                kind, item = parent.recv()
            except EOFError:
                proc.join(1.0)
                raise SolverLimitError(_death(proc.exitcode, limits)) from None
            if kind == "item":
                items.append(item)
            elif kind == "done":
                finished = True
                break
            else:
                raise RuntimeError(f"The solver subprocess failed: {item}")
    finally:
        _kill_group(proc)
        parent.close()
    return items, finished, time.perf_counter() - t0


def _solve_child(pysat_name: str, clauses: list[list[int]], atmosts: list, assumptions: list[int],
                 phases: list[int] | None) -> Iterator[tuple[bool, list[int] | None]]:
    with Solver(name=pysat_name, bootstrap_with=clauses) as s:
        for lits, k in atmosts:
            s.add_atmost(lits, k)
        if phases:
            s.set_phases(phases)
        ok = s.solve(assumptions=assumptions)
        yield bool(ok), (s.get_model() if ok else None)


class BudgetedSolver:
    """A solver loaded with an :class:`Encoding`, answering ``solve`` calls within a time budget.

    Use it in a ``with`` block. Clauses added with :meth:`add_clause` stay for later calls (the
    caller owns this solver; :class:`SatInverter` guards its own blocking clauses with an
    activation literal).

    Parameters
    ----------
    encoding : Encoding
    solver : str
        One of :func:`list_solvers`, or ``"auto"`` (:func:`default_solver`). The ``native``
        encoding needs ``minicard`` or ``gluecard4``.
    time_s : float or None
        Default budget per call, in seconds (``None``: unlimited).

    Fresh variables (activation literals, counters) come from the solver's own pool, numbered
    after the encoding's: the :class:`Encoding` is never changed by solving.
    """

    def __init__(self, encoding: Encoding, *, solver: str = "auto", time_s: float | None = 10.0) -> None:
        self.encoding = encoding
        self.solver = solver
        self.time_s = time_s
        self.solver_name = resolve_solver(solver, encoding)
        self._spec = SOLVERS.get(self.solver_name)
        if encoding.native and not self._spec.native_cardinality:
            native = ", ".join(n for n in SOLVERS.names() if SOLVERS.get(n).native_cardinality)
            raise ValueError(f"The 'native' encoding needs a solver with native cardinality ({native}). Got {solver!r} instead.")
        self.pool = IDPool(start_from=encoding.pool.top + 1)
        self._s: Solver | None = None
        self._extra: list[list[int]] = []
        self._units: set[int] | None = None

    def __enter__(self) -> BudgetedSolver:
        if self._spec.interruptible:
            self._s = Solver(name=self._spec.pysat_name, bootstrap_with=self.encoding.formula.clauses)
            for lits, k in self.encoding.formula.atmosts:
                self._s.add_atmost(lits, k)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._s is not None:
            self._s.delete()
            self._s = None

    @property
    def in_process(self) -> bool:
        """True when the solver lives in this process (propagate() and phases work)."""
        return self._s is not None

    def new_var(self) -> int:
        """A fresh variable (for activation literals and side constraints), from :attr:`pool`."""
        return self.pool.id()

    def add_clause(self, clause: Iterable[int]) -> None:
        clause = [int(l) for l in clause]
        if len(clause) == 1 and self._units is not None:
            self._units.add(clause[0])
        if self._s is not None:
            self._s.add_clause(clause)
        else:
            self._extra.append(clause)

    def propagate(self, assumptions: Sequence[int]) -> tuple[bool, set[int]]:
        """Unit propagation only: ``(no_conflict, literals fixed)`` including level-0 units."""
        if self._s is None:
            raise ValueError(f"propagate() needs an in-process solver; {self.solver!r} runs in a subprocess.")
        if self._units is None:  # level-0 facts are not reported by propagate(); collect them once
            self._units = {c[0] for c in (*self.encoding.formula.clauses, *self._extra) if len(c) == 1}
        ok, lits = self._s.propagate(assumptions=list(assumptions))
        return bool(ok), set(lits or ()) | self._units

    def solve(self, assumptions: Sequence[int] = (), *, time_s: float | None = None,
              phases: Sequence[int] | None = None) -> SolveOutcome:
        """Solve under ``assumptions`` within ``time_s`` seconds.

        ``time_s=None`` takes the constructor's budget; ``math.inf`` means unlimited. ``phases``
        are preferred polarities (e.g. a candidate input), a hint only.
        """
        budget = budget_seconds(self.time_s if time_s is None else time_s)
        assumptions = [int(a) for a in assumptions]
        if self._s is None:
            items, finished, seconds = run_streaming(
                _solve_child, (self._spec.pysat_name, [*self.encoding.formula.clauses, *self._extra],
                               self.encoding.formula.atmosts, assumptions, list(phases or ())), budget)
            if not finished:
                return SolveOutcome(SatResult.UNKNOWN, None, seconds)
            ok, model = items[0]
            return SolveOutcome(SatResult.SAT if ok else SatResult.UNSAT, model, seconds)
        s = self._s
        if phases:
            s.set_phases(list(phases))
        before = s.accum_stats().get("conflicts", 0)
        timer = threading.Timer(budget, s.interrupt) if budget is not None else None
        t0 = time.perf_counter()
        if timer is not None:
            timer.start()
        try:
            ok = s.solve_limited(assumptions=assumptions, expect_interrupt=timer is not None)
        finally:
            if timer is not None:
                timer.cancel()
            s.clear_interrupt()
        seconds = time.perf_counter() - t0
        conflicts = s.accum_stats().get("conflicts", 0) - before
        if ok is None:
            return SolveOutcome(SatResult.UNKNOWN, None, seconds, conflicts)
        return SolveOutcome(SatResult.SAT if ok else SatResult.UNSAT, s.get_model() if ok else None, seconds, conflicts)


def budget_seconds(time_s: float | None) -> float | None:
    """A budget as the timers take it: ``None`` or ``inf`` is unlimited (``None``), else a float >= 0."""
    if time_s is None or math.isinf(time_s):
        return None
    if time_s < 0:
        raise ValueError(f"A time budget must be a float in [0, inf]. Got {time_s} instead.")
    return float(time_s)


@dataclass(frozen=True)
class _Budget:
    """Time left of an overall budget (``None``: unlimited)."""

    time_s: float | None
    t0: float = field(default_factory=time.perf_counter)

    def left(self) -> float | None:
        return None if self.time_s is None else max(0.0, self.time_s - (time.perf_counter() - self.t0))
