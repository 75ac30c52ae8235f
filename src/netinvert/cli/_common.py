"""Options shared by sub-commands (``--device``, ``--seed``) and JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..runs import _jsonable

__all__ = ["add_common", "emit_json"]


def add_common(p: argparse.ArgumentParser, *, seed: bool = True, device: bool = True) -> None:
    if device:
        p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"), help="where to compute (default: auto)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed; runs are reproducible given it")


def emit_json(obj: Any) -> None:
    """Print a result as JSON on stdout (machine-readable; logs go to stderr)."""
    sys.stdout.write(json.dumps(_jsonable(obj), indent=2) + "\n")
