"""``netinvert datasets | train | evaluate | demo``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..data import load_dataset
from ..models import TrainConfig, build_model, evaluate_classifier, list_models, train_classifier
from ..models._checkpoint import load_classifier_run, save_classifier
from ..exceptions import RunFormatError
from ..runs import write_json
from ._common import add_common, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a classifier and write a run folder")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--model", default="cnn", help=f"one of {', '.join(list_models())}")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--adv-eps", type=float, default=0.0, help="adversarial training radius (0: plain)")
    p.add_argument("--out", required=True, type=Path)
    add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained classifier run")
    p.add_argument("run", type=Path)
    p.add_argument("--data-root", default=None)
    add_common(p, seed=False)
    p.set_defaults(func=cmd_evaluate)


def cmd_train(args: argparse.Namespace) -> int:
    data = load_dataset(args.dataset, args.data_root)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         adv_eps=args.adv_eps, device=args.device)
    torch.manual_seed(args.seed)
    model = build_model(args.model, input_shape=data.input_shape, n_classes=data.n_classes, mean=data.mean, std=data.std)
    t0 = time.perf_counter()
    history = train_classifier(model, data, config)
    seconds = time.perf_counter() - t0
    acc = evaluate_classifier(model, data.x_test, data.y_test)
    card = {"dataset": data.name, "dataset_info": data.describe(), "model": args.model, "data_root": args.data_root, "train_config": config.to_dict(),
            "seed": args.seed, "test_accuracy": acc, "train_seconds": seconds, "history": history}
    save_classifier(model.cpu(), args.out, card)
    emit_json({"run": str(args.out), "dataset": data.name, "model": args.model, "test_accuracy": acc, "train_seconds": round(seconds, 2)})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .._device import resolve_device

    model, card = load_classifier_run(args.run, device=resolve_device(args.device))
    name = card.get("dataset")
    if not isinstance(name, str):
        raise RunFormatError(f"{args.run}/card.json names no dataset; pass a run folder written by 'netinvert train'.")
    data = load_dataset(name, args.data_root or card.get("data_root"))
    acc = evaluate_classifier(model, data.x_test, data.y_test)
    metrics = {"dataset": name, "model": card["model"], "test_accuracy": acc, "n_test": len(data.x_test)}
    write_json(Path(args.run) / "evaluate.json", metrics)
    emit_json(metrics)
    return 0
