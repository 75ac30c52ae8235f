"""Options every command shares, and JSON output.

One grammar for every command (``docs/architecture.md``): a command that writes takes ``--out``
(a new run folder; one that holds anything is refused unless ``--force``) and never writes into
its input run; a command that computes takes ``--device``, ``--seed`` and ``--threads``; budgets
are ``--seconds`` and counts ``-n``. Old spellings stay as hidden aliases for one release.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..runs import jsonable

__all__ = ["add_common", "add_out", "add_alias", "emit_json"]


def add_common(p: argparse.ArgumentParser, *, seed: bool = True, device: bool = True, threads: bool = True) -> None:
    """``--device``, ``--seed`` and ``--threads``: every command that computes takes all three."""
    if device:
        p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"), help="where to compute (default: auto)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed; runs are reproducible given it")
    if threads:
        p.add_argument("--threads", type=_positive_int, default=None,
                       help="torch threads (default: $NETINVERT_THREADS, else half the usable cores, at least 1)")


def add_out(p: argparse.ArgumentParser, *, required: bool = True, what: str = "run folder to write",
            default: Path | None = None) -> None:
    """``--out`` (a new run folder) and ``--force`` (replace one that exists, once the new run is complete)."""
    if default is not None:
        p.add_argument("--out", type=Path, default=default, help=f"{what} (default: {default})")
    else:
        p.add_argument("--out", required=required, type=Path, help=what + ("" if required else " (default: print only)"))
    p.add_argument("--force", action="store_true", help="replace an --out that already holds files, once the new run is complete")


def add_alias(p: argparse.ArgumentParser, *flags: str, dest: str, type: Any = None) -> None:
    """Old spellings of an option, accepted for one release but not shown in ``--help``."""
    kwargs: dict[str, Any] = {"dest": dest, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS}
    if type is not None:
        kwargs["type"] = type
    p.add_argument(*flags, **kwargs)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int. Got {text!r} instead.") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int. Got {text!r} instead.")
    return value


def emit_json(obj: Any) -> None:
    """Print a result as JSON on stdout (machine-readable; logs go to stderr)."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
