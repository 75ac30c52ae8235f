"""``netinvert ood train`` and ``netinvert ood evaluate``: thin layers over :mod:`netinvert.apps.ood`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..apps.ood import OODRunConfig, list_ood_sets, list_selections, run_ood, run_ood_evaluation
from ._common import add_common, add_model_param, add_out, emit_json, int_list

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    ood = sub.add_parser("ood", help="out-of-distribution detection with an inverted garbage class (arXiv 2505.23448)")
    cmds = ood.add_subparsers(dest="ood_command", metavar="OOD_COMMAND")

    p = cmds.add_parser("train", help="extend a classifier by a garbage class fed with noise and inverted samples",
                        description="Widen a classifier run (--classifier) or a model trained here (--dataset, --model) "
                                    "to n+1 classes and run the garbage-class loop; write the run folder --out.")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--classifier", type=Path, default=None, help="classifier run folder to start from")
    start.add_argument("--dataset", default=None, help="train the starting model on this dataset (needs --model)")
    p.add_argument("--model", default=None, help="architecture of the starting model (with --dataset)")
    add_model_param(p)
    p.add_argument("--classes", type=int_list, default=None, metavar="I,J,...",
                   help="train on these classes only (with --dataset); the others are the OOD set 'held-out'")
    p.add_argument("--data-root", default=None)
    p.add_argument("--base-epochs", type=int, default=OODRunConfig.base_epochs, help="epochs of the starting model (--dataset)")
    p.add_argument("--rounds", type=int, default=OODRunConfig.rounds, help="inversion rounds (default 3)")
    budget = p.add_argument_group("inversion budget per round (whichever ends first; neither: 300 steps)")
    budget.add_argument("--steps", type=int, default=None)
    budget.add_argument("--seconds", type=float, default=None)
    p.add_argument("-n", type=int, default=OODRunConfig.samples_per_round, dest="samples_per_round",
                   help="inverted samples added to the garbage class per round, at most (default 200)")
    p.add_argument("--selection", default=OODRunConfig.selection, choices=list_selections(),
                   help="which inverted samples join the garbage class (default robust-disagree)")
    p.add_argument("--noise-uniform", type=int, default=OODRunConfig.noise_uniform, help="uniform noise seed images")
    p.add_argument("--noise-gaussian", type=int, default=OODRunConfig.noise_gaussian, help="Gaussian noise seed images")
    p.add_argument("--class-weights", default="balanced",
                   help="'balanced', 'uniform' or n+1 comma-separated floats (default balanced)")
    p.add_argument("--epochs-per-round", type=int, default=OODRunConfig.epochs_per_round)
    p.add_argument("--batch-size", type=int, default=OODRunConfig.batch_size, help="training and retraining batch size")
    p.add_argument("--lr", type=float, default=OODRunConfig.lr, help="retraining learning rate (AdamW)")
    p.add_argument("--val-fraction", type=float, default=OODRunConfig.val_fraction)
    p.add_argument("--accuracy-budget", type=float, default=OODRunConfig.accuracy_budget,
                   help="operating point: bias the garbage logit as far as this validation-accuracy drop allows "
                        f"(default {OODRunConfig.accuracy_budget}; 0: plain argmax)")
    p.add_argument("--verifier-epochs", type=int, default=None, help="override the verifiers' epochs (quick checks only)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same options into the same --out from its last finished round "
                        "(a checkpoint is kept in the hidden folder .OUT.partial after each round)")
    add_out(p)
    add_common(p)
    p.set_defaults(func=cmd_train)

    p = cmds.add_parser("evaluate", help="score an OOD run and the baselines on OOD sets; print (and write) metrics",
                        description="Score the in-distribution test split and each --ood set with the garbage-class model "
                                    f"(garbage, ue) and the original model (msp, max-logit, energy, mahalanobis). "
                                    f"OOD sets: {', '.join(list_ood_sets())}.")
    p.add_argument("--classifier", type=Path, required=True, metavar="OODRUN", help="run folder of 'netinvert ood train'")
    p.add_argument("--ood", action="append", required=True, metavar="NAME",
                   help="OOD set name (or 'held-out' for a run trained with --classes); repeatable")
    p.add_argument("-n", type=int, default=None, help="images per OOD set (default: the test split's size for noise)")
    p.add_argument("--accuracy-budget", type=float, default=None,
                   help="recalibrate the garbage-logit bias on the run's validation split with this accuracy budget "
                        "(default: the bias the run stores; b = 0 for runs older than the operating point)")
    add_out(p, required=False, what="new folder to write card.json, metrics.json and histograms into")
    add_common(p)
    p.set_defaults(func=cmd_evaluate)


def _weights(text: str) -> str | tuple[float, ...]:
    if text in ("balanced", "uniform"):
        return text
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--class-weights must be 'balanced', 'uniform' or comma-separated floats. Got {text!r} instead.") from None


def cmd_train(args: argparse.Namespace) -> int:
    config = OODRunConfig(
        classifier=args.classifier, dataset=args.dataset, model=args.model, data_root=args.data_root,
        model_params=dict(args.model_param), classes=args.classes, batch_size=args.batch_size, lr=args.lr,
        base_epochs=args.base_epochs, rounds=args.rounds, steps=args.steps, seconds=args.seconds,
        samples_per_round=args.samples_per_round, selection=args.selection, noise_uniform=args.noise_uniform,
        noise_gaussian=args.noise_gaussian, class_weights=_weights(args.class_weights),
        epochs_per_round=args.epochs_per_round, val_fraction=args.val_fraction, accuracy_budget=args.accuracy_budget,
        verifier_epochs=args.verifier_epochs, seed=args.seed, device=args.device, threads=args.threads,
    )
    emit_json(run_ood(config, args.out, force=args.force, resume=args.resume, progress=not args.no_progress))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    emit_json(run_ood_evaluation(args.classifier, args.ood, args.out, n=args.n, accuracy_budget=args.accuracy_budget,
                                 seed=args.seed, device=args.device, threads=args.threads, force=args.force))
    return 0
