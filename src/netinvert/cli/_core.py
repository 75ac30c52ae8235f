"""``netinvert train`` and ``netinvert evaluate``: classifiers in and out of run folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models import OPTIMIZERS, ClassifierRunConfig, TrainConfig, list_models, run_evaluation, run_training
from ._common import add_common, add_model_param, add_out, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a classifier and write a run folder",
                       description="Train a classifier on a dataset, evaluate it on the test split and write "
                                   "the run folder OUT (card.json, weights.safetensors, metrics.json); it appears whole "
                                   "or not at all.")
    p.add_argument("--dataset", default="digits", help="dataset name (see 'netinvert datasets'; default: digits)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--model", default="cnn", help=f"architecture, one of: {', '.join(list_models())} (default: cnn)")
    add_model_param(p)
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay,
                   help=f"weight decay (default: {TrainConfig.weight_decay}); decoupled with adamw, an L2 penalty with sgd")
    p.add_argument("--optimizer", default=TrainConfig.optimizer, choices=sorted(OPTIMIZERS),
                   help="adamw (default) or sgd (momentum 0.9); full-batch sgd with weight decay, trained long, is the "
                        "regime of the KKT reconstruction attack (reconstruct --method kkt)")
    p.add_argument("--eval-every", type=int, default=TrainConfig.eval_every, metavar="E",
                   help="measure test accuracy every E epochs and after the last (default 1)")
    p.add_argument("--adv-eps", type=float, default=0.0,
                   help="adversarial (PGD, L-inf) training radius in [0,1] pixel units; 0 trains plainly")
    p.add_argument("--adv-steps", type=int, default=TrainConfig.adv_steps, help="PGD steps per batch with --adv-eps")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="train on N training images (random, seeded by --seed); the run records them and an equal-size "
                        "disjoint non-member set (members.safetensors); the test split stays whole")
    p.add_argument("--subset-seed", type=int, default=None, metavar="S",
                   help="with --subset: draw the N images class-balanced with seed S (non-members with the same counts)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same options into the same --out from its checkpoint (kept in the "
                        "hidden folder .OUT.partial after Ctrl-C or SIGTERM); without a checkpoint, start afresh")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0, metavar="S",
                   help="seconds between checkpoints (default 60); one is also written when training ends or is interrupted")
    p.add_argument("--checkpoint-steps", type=int, default=None, metavar="K", help="also write a checkpoint every K batches")
    add_out(p)
    add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained classifier on a test split",
                       description="Print the test metrics of a classifier as JSON; with --out, also write them into "
                                   "a new folder (card.json, metrics.json). The classifier is a run folder, a "
                                   "TorchScript file, or a state dict with --factory; foreign models need --dataset. "
                                   "Nothing is ever written into the classifier's own folder.")
    p.add_argument("--classifier", type=Path, default=None, metavar="SOURCE",
                   help="run folder, TorchScript file, or state dict file")
    p.add_argument("source", nargs="?", type=Path, default=None, help=argparse.SUPPRESS)  # old spelling, one release
    p.add_argument("--dataset", default=None, help="dataset to test on (default: the one named in the card)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--factory", default=None, help="'package.module:function' building the module of a state dict")
    p.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                   help="input shape of a foreign model (default: the card's, else the dataset's)")
    p.add_argument("--n-classes", type=int, default=None, help="class count of a foreign model (default: as input shape)")
    p.add_argument("--feature-layer", default=None, help="layer whose output are the features of a foreign model")
    add_out(p, required=False, what="new folder to write card.json and metrics.json into")
    add_common(p)
    p.set_defaults(func=cmd_evaluate)


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 1,28,28). Got {text!r} instead.") from None
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive ints C,H,W. Got {text!r} instead.")
    return shape  # type: ignore[return-value]


def cmd_train(args: argparse.Namespace) -> int:
    config = ClassifierRunConfig(
        dataset=args.dataset, data_root=args.data_root, model=args.model, model_params=dict(args.model_param),
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                          optimizer=args.optimizer, eval_every=args.eval_every, adv_eps=args.adv_eps, adv_steps=args.adv_steps),
        subset=args.subset, subset_seed=args.subset_seed, seed=args.seed, device=args.device, threads=args.threads,
    )
    emit_json(run_training(config, args.out, force=args.force, resume=args.resume, progress=not args.no_progress,
                           checkpoint_seconds=args.checkpoint_seconds, checkpoint_steps=args.checkpoint_steps))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if (args.classifier is None) == (args.source is None):
        raise ValueError("Name the classifier once: evaluate --classifier SOURCE"
                         + (" (the positional SOURCE is its old spelling; give one, not both)." if args.classifier else "."))
    result = run_evaluation(
        args.classifier or args.source, dataset=args.dataset, data_root=args.data_root, factory=args.factory,
        input_shape=args.input_shape, n_classes=args.n_classes, feature_layer=args.feature_layer, device=args.device,
        seed=args.seed, threads=args.threads, out=args.out, force=args.force,
    )
    emit_json(result)
    return 0
