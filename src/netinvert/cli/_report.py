"""``netinvert report``: a thin layer over :func:`netinvert.report.write_html_report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_out, emit_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page over run folders (pictures inlined, opens offline)",
                       description="Read run folders written by netinvert commands and write one HTML file that shows each "
                                   "run's configuration, metrics tables, pictures (inlined, so the file opens anywhere "
                                   "on its own) and training curves; with several runs an index at the top links to "
                                   "each. The runs are only read.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folder(s) to show, in this order")
    add_out(p, what="HTML file to write (never inside a run it reads)")
    p.add_argument("--title", default=None, help="page title (default: the run's kind, or the number of runs)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import write_html_report

    emit_json(write_html_report(args.runs, args.out, force=args.force, title=args.title))
    return 0
