"""Independent tasks in worker processes (``--jobs N``) or on a Dask cluster (``--scheduler ADDRESS``).

A query over many labels, inputs or test images is a list of independent tasks, each bounded by its
own time budget. :func:`map_tasks` runs them in this process, in a pool of ``jobs`` worker processes,
or on the Dask cluster at ``scheduler``, and returns their values in task order, so the caller
assembles the same answer whichever way they ran.

Workers are started by ``forkserver`` with netinvert preloaded: a fresh server process forks each
worker, so no worker inherits the parent's torch or OpenMP threads (forking a process that used
them can hang), and none pays for importing torch again. Each worker computes on one torch thread:
the solvers are single-threaded, and N workers on N cores should not fight over them. An exception
in a task is raised here; on an interrupt the tasks not yet started are cancelled.

Dask is optional (``pip install "netinvert[scale]"``) and imported only when a scheduler is named.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["map_tasks", "split", "check_jobs", "scheduler_workers"]

log = logging.getLogger(__name__)

#: What a worker process imports before it is forked (the BNN queries' tasks live there).
PRELOAD = ["netinvert.bnn"]


def check_jobs(jobs: Any, scheduler: Any, owner: str) -> None:
    """``jobs`` is an int >= 1 and ``scheduler`` None or a non-empty address (sklearn's message shape)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"The 'jobs' parameter of {owner} must be an int in [1, inf). Got {jobs!r} instead.")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ValueError(f"The 'scheduler' parameter of {owner} must be None or a Dask scheduler address such as "
                         f"'tcp://host:8786'. Got {scheduler!r} instead.")


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` in at most ``parts`` contiguous, near-equal, non-empty chunks (order kept)."""
    items = list(items)
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + size + (i < extra)
        out.append(items[start:stop])
        start = stop
    return [c for c in out if c] or [[]]


def _init_worker() -> None:
    """One torch thread per worker process."""
    import torch

    torch.set_num_threads(1)


def _client(scheduler: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise ImportError("--scheduler (scheduler=) runs tasks on a Dask cluster and needs dask.distributed: "
                          "pip install 'netinvert[scale]' (or pip install 'dask[distributed]').") from None
    return Client(scheduler)


def scheduler_workers(scheduler: str) -> int:
    """Threads the Dask cluster at ``scheduler`` offers (at least 1)."""
    with _client(scheduler) as client:
        return max(1, sum(client.nthreads().values()))


def _dask_task(fn: Callable[..., Any], children: bool, shared: Any, chunk: Any) -> Any:
    """``fn(shared, chunk)`` on a Dask worker, refusing clearly where it could not start its subprocesses."""
    if children and multiprocessing.current_process().daemon:
        raise RuntimeError("This query starts solver subprocesses, which a daemonic Dask worker process may not do. Start "
                           "the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False in their environment (or "
                           "dask.config.set({'distributed.worker.daemon': False}) before a LocalCluster).")
    return fn(shared, chunk)


def map_tasks(fn: Callable[..., Any], shared: Any, chunks: Sequence[Any], *, jobs: int = 1,
              scheduler: str | None = None, children: bool = False) -> list[Any]:
    """``[fn(shared, chunk) for chunk in chunks]``, computed here, in ``jobs`` processes, or on Dask.

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled by name).
    shared : picklable
        What every task reads (a loaded run and the query's parameters); sent to each worker process
        once per task, and to a Dask cluster once (scattered to every worker).
    chunks : sequence
        One item per task.
    jobs : int
        Worker processes (1: compute here, in order). Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``); its workers need netinvert installed.
    children : bool
        The tasks start subprocesses (counters, samplers). Dask's worker processes are daemonic by
        default, and a daemonic process may not start children: such tasks need workers started with
        ``distributed.worker.daemon`` False, and say so rather than failing deep inside a solver.

    Raises
    ------
    ImportError
        ``scheduler`` without dask.distributed installed.
    RuntimeError
        ``children`` on a Dask worker that is a daemonic process.
    """
    if scheduler is not None:
        with _client(scheduler) as client:
            shared_future = client.scatter(shared, broadcast=True)
            n = len(chunks)
            futures = client.map(_dask_task, [fn] * n, [children] * n, [shared_future] * n, list(chunks), pure=False)
            return client.gather(futures)
    if jobs <= 1 or len(chunks) <= 1:
        return [fn(shared, chunk) for chunk in chunks]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(chunks)), mp_context=ctx, initializer=_init_worker)
    try:
        futures = [pool.submit(fn, shared, chunk) for chunk in chunks]
        values = [f.result() for f in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # an error or Ctrl-C: start nothing more
        raise
    pool.shutdown(wait=True)
    return values
