"""``netinvert train`` and ``netinvert evaluate``: classifiers in and out of run folders."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from .._device import resolve_device, seed_everything
from ..data import load_dataset
from ..exceptions import RunFormatError
from ..models import (
    MODELS,
    TrainConfig,
    build_model,
    evaluate_classifier,
    list_models,
    load_classifier,
    save_classifier,
    train_classifier,
)
from ..runs import write_json
from ._common import add_common, emit_json

log = logging.getLogger(__name__)

#: What ``evaluate`` writes into a run folder (``train`` puts the same metrics in the card).
EVALUATION_NAME = "evaluate.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a classifier and write a run folder",
                       description="Train a classifier on a dataset, evaluate it on the test split and write "
                                   "OUT/card.json and OUT/weights.safetensors.")
    p.add_argument("--dataset", default="digits", help="dataset name (see 'netinvert datasets'; default: digits)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--model", default="cnn", help=f"architecture, one of: {', '.join(list_models())} (default: cnn)")
    p.add_argument("--model-param", action="append", default=[], type=_model_param, metavar="KEY=VALUE",
                   help="architecture argument, VALUE in JSON (e.g. channels=[16,32], convs_per_block=1); repeatable")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--adv-eps", type=float, default=0.0,
                   help="adversarial (PGD, L-inf) training radius in [0,1] pixel units; 0 trains plainly")
    p.add_argument("--adv-steps", type=int, default=TrainConfig.adv_steps, help="PGD steps per batch with --adv-eps")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--out", required=True, type=Path, help="run folder to write")
    add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained classifier on a test split",
                       description="Print the test metrics of a classifier and write them to RUN/evaluate.json "
                                   "(or --out). SOURCE is a run folder, a TorchScript file, or a state dict "
                                   "with --factory; foreign models need --dataset.")
    p.add_argument("source", type=Path, help="run folder, TorchScript file, or state dict file")
    p.add_argument("--dataset", default=None, help="dataset to test on (default: the one named in the card)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--factory", default=None, help="'package.module:function' building the module of a state dict")
    p.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                   help="input shape of a foreign model (default: the card's, else the dataset's)")
    p.add_argument("--n-classes", type=int, default=None, help="class count of a foreign model (default: as input shape)")
    p.add_argument("--feature-layer", default=None, help="layer whose output are the features of a foreign model")
    p.add_argument("--out", type=Path, default=None, help=f"metrics file (default: RUN/{EVALUATION_NAME} for run folders)")
    add_common(p, seed=False)
    p.set_defaults(func=cmd_evaluate)


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 1,28,28). Got {text!r} instead.") from None
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive ints C,H,W. Got {text!r} instead.")
    return shape  # type: ignore[return-value]


def _model_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. hidden=64). Got {text!r} instead.")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare word is a string


def cmd_train(args: argparse.Namespace) -> int:
    MODELS.get(args.model)  # fail on a typo before loading a large dataset
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         adv_eps=args.adv_eps, adv_steps=args.adv_steps, device=args.device)
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, args.data_root)
    seed_everything(args.seed)  # the initial weights depend on the seed too
    try:
        model = build_model(args.model, input_shape=data.input_shape, n_classes=data.n_classes, mean=data.mean,
                            std=data.std, **dict(args.model_param))
    except TypeError as exc:  # an unknown --model-param key
        raise ValueError(f"Bad --model-param for model {args.model!r}: {exc}") from None
    t0 = time.perf_counter()
    history = train_classifier(model, data, config, progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    acc = evaluate_classifier(model, data.x_test, data.y_test)
    card = {
        "dataset": data.name,
        "dataset_info": data.describe(),
        "data_root": args.data_root,
        "train_config": config.to_dict(),
        "device": str(device),
        "seed": args.seed,
        "test_accuracy": acc,
        "n_test": len(data.x_test),
        "train_seconds": seconds,
        "history": history,
    }
    save_classifier(model.cpu(), args.out, card)
    emit_json({"run": str(args.out), "dataset": data.name, "model": args.model, "test_accuracy": acc,
               "n_test": len(data.x_test), "train_seconds": round(seconds, 2)})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, args.data_root) if args.dataset else None
    shape = args.input_shape or (data.input_shape if data is not None else None)
    n_classes = args.n_classes or (data.n_classes if data is not None else None)
    source: Path = args.source
    is_run = source.is_dir()
    # A run folder knows its own shape; the dataset's only fills in what a foreign model lacks.
    model, info = load_classifier(source, factory=args.factory, input_shape=args.input_shape if is_run else shape,
                                  n_classes=args.n_classes if is_run else n_classes,
                                  feature_layer=args.feature_layer, device=device)
    if data is None:
        name = info.get("dataset")
        if not isinstance(name, str):
            raise RunFormatError(f"{source} names no dataset; pass --dataset.")
        data = load_dataset(name, args.data_root or info["card"].get("data_root"))
    if tuple(model.input_shape) != data.input_shape or model.n_classes != data.n_classes:
        raise ValueError(
            f"The classifier takes inputs {tuple(model.input_shape)} with {model.n_classes} classes, but dataset "
            f"{data.name!r} has {data.input_shape} with {data.n_classes}; pick the dataset it was trained on."
        )
    acc = evaluate_classifier(model, data.x_test, data.y_test)
    metrics: dict[str, Any] = {
        "source": str(source),
        "format": info["format"],
        "dataset": data.name,
        "model": info["card"].get("model") or info.get("factory") or info["format"],
        "test_accuracy": acc,
        "n_test": len(data.x_test),
        "device": str(device),
    }
    out = args.out or (Path(info["source"]) / EVALUATION_NAME if info["format"] == "run" else None)
    if out is not None:
        write_json(out, metrics)
        log.info("wrote %s", out)
    emit_json(metrics)
    return 0
