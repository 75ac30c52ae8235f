"""``netinvert explain``: a thin layer over :func:`netinvert.apps.explain.run_explain`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..apps.explain import ExplainConfig, list_attributions, run_explain
from ._common import add_common, add_out, emit_json, int_list

__all__ = ["register"]


def _pair(text: str) -> tuple[int, int]:
    pair = int_list(text)
    if len(pair) != 2:
        raise argparse.ArgumentTypeError(f"expected two labels A,B (e.g. 3,5). Got {text!r} instead.")
    return pair[0], pair[1]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="what an inverted classifier learnt: maps, boundaries, attributions, sanity checks",
                       description="Read an inversion run (netinvert invert) and write per-class galleries, pixel mean and "
                                   "variance maps, boundary paths between labels, Captum attribution maps, and the model/label "
                                   "randomisation sanity checks (Adebayo et al. 2018) into --out.")
    p.add_argument("run", type=Path, metavar="RUN", help="run folder of 'netinvert invert' (or of 'netinvert bnn train': "
                                                         "per-label pixel marginals of SAT preimages)")
    p.add_argument("--bnn-samples", type=int, default=ExplainConfig.bnn_samples,
                   help="BNN runs: near-uniform preimages per label (default 50)")
    p.add_argument("-n", type=int, default=ExplainConfig.samples_per_class, dest="samples_per_class",
                   help="samples per class behind the mean and variance maps (default 1000)")
    p.add_argument("--attribution", default=ExplainConfig.attribution, choices=list_attributions(),
                   help="Captum method for the attribution maps (default integrated-gradients)")
    p.add_argument("--attribution-images", type=int, default=ExplainConfig.attribution_images,
                   help="test images per class averaged into the attribution maps (default 100)")
    p.add_argument("--pair", action="append", type=_pair, default=None, dest="pairs", metavar="A,B",
                   help="labels for a boundary path; repeatable (default: the three most alike pairs)")
    p.add_argument("--no-sanity", action="store_true", help="skip the randomisation tests (they re-invert three models)")
    p.add_argument("--sanity-steps", type=int, default=None,
                   help="generator steps of each re-inversion (default: the steps the run trained)")
    p.add_argument("--shuffle-epochs", type=int, default=None, help="epochs of the shuffled-label model (default: the classifier's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_out(p)
    add_common(p)
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    config = ExplainConfig(run=args.run, samples_per_class=args.samples_per_class, attribution=args.attribution,
                           attribution_images=args.attribution_images, pairs=args.pairs, sanity=not args.no_sanity,
                           sanity_steps=args.sanity_steps, shuffle_epochs=args.shuffle_epochs, bnn_samples=args.bnn_samples, seed=args.seed,
                           device=args.device, threads=args.threads)
    emit_json(run_explain(config, args.out, force=args.force, progress=not args.no_progress))
    return 0
