"""``netinvert datasets``: which datasets are available here, and where from."""

from __future__ import annotations

import argparse
import sys

from ..data import dataset_status, list_datasets
from ._common import emit_json

_COLUMNS = ("name", "available", "input shape", "classes", "where")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "datasets",
        help="list the datasets, whether their files are here, and where from",
        description="Check each dataset's files without loading them. Unavailable ones get a "
        "note naming the files looked for and how to obtain them.",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"only these (default: all of {', '.join(list_datasets())})")
    p.add_argument("--data-root", default=None,
                   help="folder to look in (the dataset's files, or its usual sub-folder)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_datasets)


def cmd_datasets(args: argparse.Namespace) -> int:
    statuses = [dataset_status(name, args.data_root) for name in (args.names or list_datasets())]
    if args.json:
        emit_json([s.to_dict() for s in statuses])
        return 0
    rows = [
        (
            s.name,
            "yes" if s.available else "no",
            "x".join(map(str, s.input_shape)) if s.input_shape else "?",
            str(s.n_classes) if s.n_classes is not None else "?",
            s.where if s.available else "not found",
        )
        for s in statuses
    ]
    widths = [max(len(r[i]) for r in (_COLUMNS, *rows)) for i in range(len(_COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1] for r in (_COLUMNS, *rows)]
    notes = [f"{s.name}: {s.hint}" for s in statuses if not s.available]
    if notes:
        lines += ["", "Not available:", *notes]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
