"""Exceptions raised by netinvert.

Every error a user can cause derives from :class:`NetinvertError`, so a caller (and the CLI) can
report it cleanly without catching unrelated bugs. Each message says how to fix the problem.
"""

from __future__ import annotations

__all__ = [
    "NetinvertError",
    "NotFittedError",
    "UnknownNameError",
    "UnsupportedLayerError",
    "RunFormatError",
    "ResumeRefusedError",
    "DatasetError",
    "UnsafeCheckpointError",
    "TrainingDivergedError",
    "RunExistsError",
    "RunLockedError",
    "SolverLimitError",
]


class NetinvertError(Exception):
    """Base class of every error netinvert raises on purpose."""


class NotFittedError(NetinvertError, ValueError, AttributeError):
    """An estimator was used before ``fit`` was called."""


class UnknownNameError(NetinvertError, KeyError):
    """A registry lookup missed; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence.
        return str(self.args[0]) if self.args else ""


class UnsupportedLayerError(NetinvertError, TypeError):
    """A model contains a layer that an operation cannot handle."""


class RunFormatError(NetinvertError, ValueError):
    """A run folder or card is missing fields or is malformed."""


class ResumeRefusedError(RunFormatError):
    """A checkpoint cannot be resumed by this call (other settings, data or device); the checkpoint is kept."""


class DatasetError(NetinvertError, ValueError):
    """Dataset files are missing or malformed."""


class UnsafeCheckpointError(NetinvertError, ValueError):
    """A checkpoint would need arbitrary code execution (a pickle) or is corrupt."""


class TrainingDivergedError(NetinvertError, RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class RunExistsError(NetinvertError, FileExistsError):
    """An output folder already holds something; pass ``force=True`` (CLI ``--force``) to replace it."""


class RunLockedError(NetinvertError, RuntimeError):
    """Another process is writing the same output folder."""


class SolverLimitError(NetinvertError, RuntimeError):
    """A solver or counter subprocess was stopped by its CPU-time or memory limit (or died); raise the limit."""
