"""How many threads torch computes with: chosen once, deliberately, and recorded with every run.

On a shared machine more threads than free cores is far slower than fewer (measured on a busy
2-core machine: 200 inversion steps took 4x longer with 2 threads than with 1), and torch's own
default takes every core. Without an explicit choice netinvert takes half the cores it may run on
(at least 1); ``bench/results/threads.md`` holds the measurement behind that default.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["ENV_THREADS", "default_threads", "resolve_threads", "set_threads", "restores_threads"]

#: Environment variable that sets the thread count when no ``--threads``/``threads=`` is given.
ENV_THREADS = "NETINVERT_THREADS"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Half the cores this process may run on, at least one (1 on a 2-core machine)."""
    return max(1, _usable_cores() // 2)


def resolve_threads(threads: int | None = None) -> int:
    """The thread count to use: ``threads`` if given, else ``$NETINVERT_THREADS``, else :func:`default_threads`."""
    source = "threads"
    if threads is None:
        env = os.environ.get(ENV_THREADS, "").strip()
        if not env:
            return default_threads()
        source = ENV_THREADS
        try:
            threads = int(env)
        except ValueError:
            raise ValueError(f"{ENV_THREADS} must be a positive int. Got {env!r} instead.") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"The '{source}' parameter must be an int in [1, inf). Got {threads!r} instead.")
    return threads


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (see :func:`resolve_threads`) and return it."""
    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def restores_threads(func: F) -> F:
    """Give torch its thread count back when ``func`` returns: a workflow sets its own (and records it) without
    leaving a notebook user's torch changed for good."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = torch.get_num_threads()
        try:
            return func(*args, **kwargs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    return wrapper  # type: ignore[return-value]
