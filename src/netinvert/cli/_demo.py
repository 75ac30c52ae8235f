"""``netinvert demo``: the main job on the embedded digits data (:func:`netinvert.report.run_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_common, add_out, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, invert and report on the embedded digits data (the main job)")
    add_out(p, what="folder for every run of the demo, report.md and report.html", default=Path("runs/demo"))
    p.add_argument("--seconds", type=float, default=60.0, help="generator training budget (default 60)")
    p.add_argument("--bnn-preimages", type=int, default=8, help="SAT preimages per label for the BNN gallery")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars and lines")
    add_common(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..report import DemoConfig, run_demo

    config = DemoConfig(seconds=args.seconds, bnn_preimages=args.bnn_preimages, seed=args.seed, device=args.device,
                        threads=args.threads)
    emit_json(run_demo(config, args.out, force=args.force, progress=not args.no_progress))
    return 0
