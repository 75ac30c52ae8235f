"""``netinvert invert``, ``prior`` and ``sample``: parse, call one pipeline function, print its result as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..inversion import (
    DEFAULT_LOSSES,
    PAIR_SOURCES,
    InversionRunConfig,
    PriorRunConfig,
    list_augmentations,
    list_conditionings,
    list_generators,
    list_losses,
    list_lr_schedules,
    list_presets,
    run_image_prior,
    run_inversion,
    run_sampling,
)
from ._common import add_alias, add_common, add_out, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="train a generator that inverts a classifier; write weights, grids, curves and metrics")
    p.add_argument("--classifier", required=True, type=Path, help="classifier run folder (netinvert train) or model file")
    add_out(p)
    p.add_argument("--preset", default="default", choices=list_presets(),
                   help="recommended settings for a kind of data (netinvert.inversion.PRESETS); the options below override it")
    p.add_argument("--conditioning", default="vector", choices=list_conditionings())
    p.add_argument("--temperature", type=float, default=None,
                   help="sharpness T of the vector conditioning p = softmax(v / T) (default 0.05; the papers use 1)")
    p.add_argument("--generator", default="auto", choices=["auto", *list_generators()])
    p.add_argument("--image-prior", type=Path, default=None,
                   help="folder written by 'netinvert prior': the generator picks codes of that decoder instead of pixels")
    p.add_argument("--loss", action="append", metavar="NAME:WEIGHT[:K=V,...]", default=None,
                   help=f"loss term, repeatable; replaces the default set ({' '.join(DEFAULT_LOSSES)}). "
                        f"Names: {', '.join(list_losses())}")
    p.add_argument("--dropout", type=float, default=None, help="dropout rate of the generator (default 0.5)")
    p.add_argument("--latent-dim", type=int, default=None, help="size of the noise z (default 64)")
    p.add_argument("--width", type=int, default=None, help="generator capacity (channels; default 32 up to 16x16 inputs, else 64)")
    p.add_argument("--top-width", type=int, default=None,
                   help="channels of the conv generator's last, full-resolution block (default: --width); narrower is "
                        "faster on large images (docs/performance.md)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 2e-3)")
    p.add_argument("--batch-size", type=int, default=None, help="generated samples per step (default 64)")
    p.add_argument("--pairs", default=None, choices=PAIR_SOURCES,
                   help="where the mode_seeking term gets its same-condition pairs: a second generator pass over half a "
                        "batch (extra, the default) or the batch itself, each conditioning given twice (batch, faster)")
    p.add_argument("--lr-schedule", default=None, choices=list_lr_schedules(), help="default cosine")
    p.add_argument("--augment", default=None, choices=list_augmentations(),
                   help="random transformation of generated images before the classifier (default none)")
    p.add_argument("--ema", type=float, default=None, help="decay of the EMA copy of the generator used for sampling (default: off)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, default=None, help="training budget in seconds")
    budget.add_argument("--steps", type=int, default=None, help="training budget in steps (default 1000; reproducible)")
    p.add_argument("-n", type=int, default=100, help="samples per class scored for metrics.json (default 100)")
    add_alias(p, "--n-per-class", dest="n", type=int)
    p.add_argument("--dataset", default=None,
                   help="the classifier's dataset, if its card does not name it; a model file (TorchScript, state dict) "
                        "without a card takes its input shape and class count from it")
    p.add_argument("--data-root", default=None)
    p.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                   help="input shape of a model file that carries none, when --dataset does not give it")
    p.add_argument("--n-classes", type=int, default=None, metavar="N",
                   help="class count of a model file that carries none, when --dataset does not give it")
    p.add_argument("--verifiers", type=Path, default=None,
                   help="folder caching the plain and robust verifiers (default OUT/verifiers); trained when missing")
    p.add_argument("--verifier-epochs", type=int, default=None, help="override the verifiers' epochs (quick checks only)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_resume(p)
    add_common(p)
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("prior", help="train an image prior (a VAE decoder on unlabelled images) for 'invert --image-prior'")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-root", default=None)
    add_out(p, what="folder to write (weights, card, a grid of the prior's samples)")
    p.add_argument("--code-dim", type=int, default=32)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--exclude-members", type=Path, nargs="+", default=[], metavar="CLASSIFIER",
                   help="leave out the training images these classifier runs recorded as members or non-members (a prior "
                        "for 'reconstruct --image-prior' that favours neither set)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_resume(p, unit="batches")
    add_common(p)
    p.set_defaults(func=cmd_prior)

    p = sub.add_parser("sample", help="draw samples of a label from an inversion run; write PNGs, an .npz and a card")
    p.add_argument("run", type=Path, help="run folder written by 'netinvert invert'")
    p.add_argument("--label", required=True, help="class index or class name")
    p.add_argument("-n", type=int, default=16, help="number of samples")
    add_alias(p, "--n", "--samples", dest="n", type=int)
    add_out(p, what="folder to write (the PNGs, samples.npz and card.json)")
    p.add_argument("--classifier", type=Path, default=None,
                   help="use this classifier instead of the one the run's card records (found relative to the run folder); "
                        "its weights must be those the run inverted, unless --allow-other-classifier")
    p.add_argument("--allow-other-classifier", action="store_true",
                   help="sample against a classifier whose weights differ from those the run inverted (a warning says so)")
    add_common(p)
    p.set_defaults(func=cmd_sample)


def _shape(text: str) -> tuple[int, ...]:
    """``C,H,W`` as a tuple of three positive ints."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(f"must be C,H,W (three positive ints, e.g. 1,28,28). Got {text!r} instead.")
    return shape


def add_resume(p: argparse.ArgumentParser, unit: str = "steps") -> None:
    """``--resume`` and how often a checkpoint is written (every K ``unit``: steps, or batches for the prior)."""
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same options into the same --out from its checkpoint (kept in the "
                        "hidden folder .OUT.partial after Ctrl-C or SIGTERM); without a checkpoint, start afresh")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0, metavar="S",
                   help="seconds between checkpoints (default 60); one is also written when training ends or is interrupted")
    p.add_argument("--checkpoint-steps", type=int, default=None, metavar="K", help=f"also write a checkpoint every K {unit}")


def cmd_invert(args: argparse.Namespace) -> int:
    config = InversionRunConfig(
        classifier=args.classifier, dataset=args.dataset, data_root=args.data_root, input_shape=args.input_shape,
        n_classes=args.n_classes, preset=args.preset,
        conditioning=args.conditioning, temperature=args.temperature, generator=args.generator, image_prior=args.image_prior,
        losses=None if args.loss is None else tuple(args.loss), dropout=args.dropout, latent_dim=args.latent_dim,
        width=args.width, top_width=args.top_width, lr=args.lr, batch_size=args.batch_size, pairs=args.pairs,
        lr_schedule=args.lr_schedule, augment=args.augment, ema=args.ema, seconds=args.seconds, steps=args.steps, n_per_class=args.n, verifiers=args.verifiers,
        verifier_epochs=args.verifier_epochs, seed=args.seed, device=args.device, threads=args.threads)
    emit_json(run_inversion(config, args.out, force=args.force, resume=args.resume, progress=not args.no_progress,
                            checkpoint_steps=args.checkpoint_steps, checkpoint_seconds=args.checkpoint_seconds))
    return 0


def cmd_prior(args: argparse.Namespace) -> int:
    config = PriorRunConfig(dataset=args.dataset, data_root=args.data_root, code_dim=args.code_dim, epochs=args.epochs,
                            exclude_members=tuple(args.exclude_members), seed=args.seed, device=args.device, threads=args.threads)
    emit_json(run_image_prior(config, args.out, force=args.force, resume=args.resume, progress=not args.no_progress,
                              checkpoint_steps=args.checkpoint_steps, checkpoint_seconds=args.checkpoint_seconds))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    emit_json(run_sampling(args.run, args.label, args.n, args.out, seed=args.seed, classifier=args.classifier,
                           allow_other_classifier=args.allow_other_classifier, device=args.device, threads=args.threads,
                           force=args.force))
    return 0
