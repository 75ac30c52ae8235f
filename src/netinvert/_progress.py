"""Progress on long work: a bar on a terminal, one log line per interval anywhere else.

A tqdm bar redraws with carriage returns; written to a file or a CI log it leaves hundreds of
half-lines. When stderr is not a terminal the same calls log ``desc: done/total (pct) elapsed``
to the ``netinvert.progress`` logger at most once per ``interval_s``, and once at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["progress_bar", "PROGRESS_LOGGER"]

PROGRESS_LOGGER = "netinvert.progress"
log = logging.getLogger(PROGRESS_LOGGER)


class _LogProgress:
    """The part of tqdm's interface netinvert uses, reporting through logging."""

    def __init__(self, total: int | None, desc: str, interval_s: float) -> None:
        self.total, self.desc, self.interval_s = total, desc, interval_s
        self.n = 0
        self._start = self._last = time.monotonic()
        self._postfix = ""
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._emit(now)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = s

    def _emit(self, now: float) -> None:
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        extra = f" {self._postfix}" if self._postfix else ""
        log.info("%s: %s %.0fs%s", self.desc, done, now - self._start, extra)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit(time.monotonic())

    def __enter__(self) -> _LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: int | None = None, desc: str = "", *, enabled: bool = True, interval_s: float = 30.0,
                 leave: bool = False) -> Any:
    """A tqdm bar when stderr is a terminal; otherwise a logger that writes one line per ``interval_s``.

    ``enabled=False`` gives a silent bar (both kinds accept the same calls).
    """
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(total=total, desc=desc, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, leave=leave)
    return _LogProgress(total, desc, interval_s)
