"""Options every command shares, and JSON output.

One grammar for every command (``docs/architecture.md``): a command that writes takes ``--out``
(a new run folder; one that holds anything is refused unless ``--force``) and never writes into
its input run; a command that computes takes ``--device``, ``--seed`` and ``--threads``; budgets
are ``--seconds`` and counts ``-n``. Old spellings stay as hidden aliases for one release.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..runs import jsonable

__all__ = ["add_common", "add_out", "add_alias", "add_model_param", "emit_json", "int_list"]


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


def add_model_param(p: argparse.ArgumentParser) -> None:
    """``--model-param KEY=VALUE`` (repeatable; collected as ``(key, value)`` pairs in ``model_param``)."""
    p.add_argument("--model-param", action="append", default=[], type=_model_param, metavar="KEY=VALUE",
                   help="architecture argument, VALUE in JSON (e.g. channels=[16,32], convs_per_block=1); repeatable")


def _model_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. hidden=64). Got {text!r} instead.")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare word is a string


def int_list(text: str) -> tuple[int, ...]:
    """A comma-separated list of ints (``0,1,2``)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints (e.g. 0,1,2). Got {text!r} instead.") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int. Got {text!r} instead.") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int. Got {text!r} instead.")
    return value


def emit_json(obj: Any) -> None:
    """Print a result as JSON on stdout (machine-readable; logs go to stderr).

    Under ``torchrun`` only rank 0 prints: every rank returns the same result, and N copies of it
    would not be one JSON document.
    """
    if os.environ.get("RANK", "0") not in ("", "0"):
        return
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
