"""``netinvert reconstruct`` and ``netinvert reconstruct evaluate``: thin layers over :mod:`netinvert.apps.reconstruct`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..apps.reconstruct import ReconstructConfig, run_reconstruction, run_reconstruction_evaluation
from ..apps.reconstruct._pipeline import METHODS
from ..inversion import list_presets
from ._common import add_common, add_out, emit_json
from ._invert import add_resume

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="recover training-like images from a classifier (TLDR) and score them "
                                           "against members and non-members",
                       description="Invert a classifier run with the TLDR recipe and write the reconstructions into --out; "
                                   "a classifier trained with --subset recorded its members and non-members, and the run "
                                   "scores the reconstructions against both (membership advantage with a 95%% interval). "
                                   "'netinvert reconstruct evaluate RUN' scores a run again.")
    p.add_argument("--classifier", type=Path, help="classifier run folder (netinvert train; --subset records members)")
    p.add_argument("--preset", default=ReconstructConfig.preset, choices=list_presets(),
                   help="inverter settings (default tldr; 'default' is plain inversion, the baseline)")
    p.add_argument("--method", default=ReconstructConfig.method, choices=METHODS,
                   help="one generator for all reconstructions (default), each image's pixels optimised directly "
                        "(per-sample), or the KKT attack of Haim et al. (kkt; for models trained with --optimizer sgd "
                        "and weight decay)")
    p.add_argument("--kkt-candidates", type=float, default=ReconstructConfig.kkt_candidates, metavar="R",
                   help="with --method kkt: optimise R candidates per reconstruction and keep those with the largest "
                        "multipliers (default 2)")
    p.add_argument("--image-prior", type=Path, default=None, metavar="DIR",
                   help="folder written by 'netinvert prior': the generator picks codes of that decoder instead of pixels "
                        "(train it with --exclude-members CLASSIFIER so it favours neither set)")
    p.add_argument("--loss", action="append", default=None, dest="losses", metavar="NAME:WEIGHT",
                   help="replace the preset's loss terms (repeatable), e.g. for an ablation")
    budget = p.add_argument_group("budget (whichever ends first; neither: 2,000 steps)")
    budget.add_argument("--steps", type=int, default=None)
    budget.add_argument("--seconds", type=float, default=None)
    p.add_argument("-n", type=int, default=None, help="reconstructions, class-balanced (default: as many as the members)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_resume(p)
    add_out(p, required=False)
    add_common(p)
    p.set_defaults(func=cmd_reconstruct)

    cmds = p.add_subparsers(dest="reconstruct_command", metavar="evaluate")
    e = cmds.add_parser("evaluate", help="score a reconstruction run against members and non-members",
                        description="Score the reconstructions of RUN against the members its classifier recorded, or "
                                    "against --members FOLDER and --non-members FOLDER (FOLDER/<any name>/*.png).")
    e.add_argument("run", type=Path, metavar="RUN", help="run folder of 'netinvert reconstruct'")
    e.add_argument("--members", type=Path, default=None, help="folder of the training images (with --non-members)")
    e.add_argument("--non-members", type=Path, default=None, help="folder of images of the same data not trained on")
    add_out(e, required=False, what="new folder for metrics.json, matching.json and matches.png")
    add_common(e)
    e.set_defaults(func=cmd_evaluate)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    if args.classifier is None or args.out is None:
        raise ValueError("netinvert reconstruct needs --classifier RUN and --out DIR (or: netinvert reconstruct evaluate RUN).")
    config = ReconstructConfig(classifier=args.classifier, preset=args.preset, method=args.method, losses=args.losses, steps=args.steps,
                               seconds=args.seconds, n=args.n, kkt_candidates=args.kkt_candidates, image_prior=args.image_prior, seed=args.seed, device=args.device, threads=args.threads)
    emit_json(run_reconstruction(config, args.out, force=args.force, resume=args.resume, progress=not args.no_progress,
                                 checkpoint_seconds=args.checkpoint_seconds, checkpoint_steps=args.checkpoint_steps))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    emit_json(run_reconstruction_evaluation(args.run, args.out, members=args.members, non_members=args.non_members,
                                            seed=args.seed, device=args.device, threads=args.threads, force=args.force))
    return 0
