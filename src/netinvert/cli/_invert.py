"""``netinvert invert`` (train a generator against a classifier) and ``netinvert sample`` (draw from it)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._device import resolve_device
from ..exceptions import RunFormatError, TrainingDivergedError
from ..inversion import (
    DEFAULT_LOSSES,
    PRESETS,
    Inverter,
    list_augmentations,
    list_conditionings,
    list_generators,
    list_losses,
    make_conditioning,
    preset,
)
from ..inversion._inverter import validity_report
from ..runs import read_card, write_json
from ._common import add_common, emit_json

log = logging.getLogger(__name__)

#: Samples per class in the image grid.
GRID_PER_CLASS = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="train a generator that inverts a classifier; write weights, grids, curves and metrics")
    p.add_argument("--classifier", required=True, type=Path, help="classifier run folder (netinvert train) or model file")
    p.add_argument("--out", required=True, type=Path, help="run folder to write")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS),
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
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 2e-3)")
    p.add_argument("--batch-size", type=int, default=None, help="generated samples per step (default 64)")
    p.add_argument("--lr-schedule", default=None, choices=("constant", "cosine"), help="default cosine")
    p.add_argument("--augment", default=None, choices=list_augmentations(),
                   help="random transformation of generated images before the classifier (default none)")
    p.add_argument("--ema", type=float, default=None, help="decay of the EMA copy of the generator used for sampling (default: off)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, default=None, help="training budget in seconds")
    budget.add_argument("--steps", type=int, default=None, help="training budget in steps (default 1000)")
    p.add_argument("--n-per-class", type=int, default=100, help="samples per class for metrics.json")
    p.add_argument("--dataset", default=None, help="the classifier's dataset, if its card does not name it")
    p.add_argument("--data-root", default=None)
    p.add_argument("--verifiers", type=Path, default=None,
                   help="folder caching the plain and robust verifiers (default OUT/verifiers); trained when missing")
    p.add_argument("--verifier-epochs", type=int, default=None, help="override the verifiers' epochs (quick checks only)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_common(p)
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("prior", help="train an image prior (a VAE decoder on unlabelled images) for 'invert --image-prior'")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", required=True, type=Path, help="folder to write (weights, card, a grid of the prior's samples)")
    p.add_argument("--code-dim", type=int, default=32)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_common(p, device=False)
    p.set_defaults(func=cmd_prior)

    p = sub.add_parser("sample", help="draw samples of a label from an inversion run; write PNGs and an .npz")
    p.add_argument("run", type=Path, help="run folder written by 'netinvert invert'")
    p.add_argument("--label", required=True, help="class index or class name")
    p.add_argument("-n", type=int, default=16, help="number of samples")
    p.add_argument("--out", required=True, type=Path, help="folder for the PNGs and samples.npz")
    p.add_argument("--classifier", type=Path, default=None, help="override the classifier recorded in the run's card")
    add_common(p)
    p.set_defaults(func=cmd_sample)


def _load_classifier(source: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    from ..models import load_classifier

    return load_classifier(source, device=device)


def _dataset_name(args: argparse.Namespace, info: dict[str, Any]) -> tuple[str | None, str | None]:
    card = info.get("card") or {}
    name = args.dataset or info.get("dataset") or card.get("dataset")
    return name, args.data_root or card.get("data_root")


def cmd_invert(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..report import save_class_grid, save_loss_curves

    device = resolve_device(args.device)
    classifier, info = _load_classifier(args.classifier, device)
    dataset, data_root = _dataset_name(args, info)
    conditioning: Any = args.conditioning
    if args.temperature is not None:
        conditioning = make_conditioning(args.conditioning, int(classifier.n_classes), temperature=args.temperature)
    options = {"losses": args.loss, "dropout": args.dropout, "latent_dim": args.latent_dim, "width": args.width, "lr": args.lr,
               "batch_size": args.batch_size, "lr_schedule": args.lr_schedule, "augment": args.augment, "ema": args.ema}
    settings = {**preset(args.preset), **{k: v for k, v in options.items() if v is not None}}
    if args.image_prior is not None:
        settings["image_prior"] = args.image_prior
    if args.generator != "auto" or "generator" not in settings:  # an explicit --generator beats the preset's
        settings["generator"] = args.generator
    inverter = Inverter(classifier, conditioning=conditioning, seed=args.seed, device=device, **settings)
    extra = {"classifier_run": str(args.classifier), "dataset": dataset, "data_root": data_root, "seed": args.seed, "preset": args.preset,
             "image_prior": None if args.image_prior is None else str(args.image_prior)}
    t0 = time.perf_counter()
    try:
        inverter.fit(steps=args.steps, seconds=args.seconds, progress=not args.no_progress)
    except TrainingDivergedError as exc:
        inverter.save(args.out, {**extra, "diverged": str(exc)})
        raise TrainingDivergedError(f"{exc} The last good generator is saved in {args.out}.") from None
    fit_seconds = time.perf_counter() - t0
    inverter.save(args.out, {**extra, "fit_seconds": fit_seconds})

    class_names = None
    data = load_dataset(dataset, data_root) if dataset else None
    if data is not None:
        class_names = list(data.class_names)
    x_grid, y_grid = inverter.sample_classes(GRID_PER_CLASS, seed=args.seed)
    notes = [f"valid {r['validity']:.2f}" for r in validity_report(classifier, x_grid, y_grid)["per_class"]]
    save_class_grid(x_grid, y_grid, args.out / "samples.png", class_names=class_names, row_notes=notes,
                    title=f"{args.conditioning} conditioning, {len(inverter.history_['step'])} steps")
    save_loss_curves(inverter.history_, args.out / "losses.png")

    x, y = inverter.sample_classes(args.n_per_class, seed=args.seed + 1)
    metrics = _metrics(args, inverter, classifier, data, x, y, device)
    write_json(args.out / "metrics.json", metrics)
    inverter.save(args.out, {**extra, "fit_seconds": fit_seconds, "metrics": _headline(metrics)})
    emit_json({"run": str(args.out), "steps": len(inverter.history_["step"]), "fit_seconds": round(fit_seconds, 2),
               **_headline(metrics)})
    return 0


def cmd_prior(args: argparse.Namespace) -> int:
    """Train the decoder on the training images only (labels unused), write it and a grid of its samples."""
    from ..data import load_dataset
    from ..inversion import save_image_prior, train_image_prior
    from ..report import save_class_grid

    data = load_dataset(args.dataset, args.data_root)
    prior, info = train_image_prior(data.x_train, code_dim=args.code_dim, epochs=args.epochs, seed=args.seed,
                                    progress=not args.no_progress, test_images=data.x_test)
    save_image_prior(args.out, prior, {"dataset": data.name, "data_root": args.data_root, "seed": args.seed, "train": info})
    with torch.no_grad():
        codes = torch.randn(100, prior.code_dim, generator=torch.Generator().manual_seed(args.seed))
        x = prior(codes)
    save_class_grid(x, torch.arange(10).repeat_interleave(10), args.out / "samples.png", class_names=[""] * 10,
                    title=f"image prior ({data.name}, code {prior.code_dim}): decoded N(0, I) codes")
    emit_json({"run": str(args.out), "dataset": data.name, **info})
    return 0


def _metrics(args: argparse.Namespace, inverter: Inverter, classifier: torch.nn.Module, data: Any,
             x: torch.Tensor, y: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """The full report of :func:`netinvert.metrics.inversion_metrics`; without a dataset only validity and confidence."""
    if data is None:
        log.warning("No dataset is known for %s (pass --dataset): metrics.json holds validity and confidence only.", args.classifier)
        report = validity_report(classifier, x, y)
        return {**report, "verifier_accuracy": None, "frechet": None, "nn_ssim": None, "diversity": None, "real_diversity": None}
    from ..metrics import inversion_metrics, train_verifiers

    verifiers = train_verifiers(data, device=device, cache_dir=args.verifiers or args.out / "verifiers",
                                progress=not args.no_progress, epochs=args.verifier_epochs)
    metrics = inversion_metrics(x, y, classifier=classifier, data=data, verifiers=verifiers, seed=args.seed)
    return {**metrics, "verifiers": verifiers.info}


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ("validity", "confidence", "verifier_accuracy", "frechet", "nn_ssim", "diversity", "real_diversity")}


def _parse_label(text: str, card: dict[str, Any], n_classes: int) -> int:
    names = ((card.get("dataset_info") or {}).get("class_names")) or card.get("class_names")
    if text.lstrip("-").isdigit():
        return int(text)
    if names and text in names:
        return list(names).index(text)
    valid = ", ".join(names) if names else f"0..{n_classes - 1}"
    raise ValueError(f"Unknown label {text!r}; use a class index or one of: {valid}.")


def cmd_sample(args: argparse.Namespace) -> int:
    from PIL import Image

    device = resolve_device(args.device)
    card = read_card(args.run, required=("kind", "classifier"))
    if card["kind"] != "inverter":
        raise RunFormatError(f"{args.run}/card.json describes a {card['kind']!r} run; pass a folder written by 'netinvert invert'.")
    source = args.classifier or card.get("classifier_run")
    if not source:
        raise RunFormatError(f"{args.run}/card.json does not record its classifier; pass --classifier.")
    classifier, info = _load_classifier(Path(source), device)
    inverter = Inverter.load(args.run, classifier, device=device)
    label = _parse_label(args.label, info.get("card") or {}, int(classifier.n_classes))
    x = inverter.sample(label, args.n, seed=args.seed)
    with torch.no_grad():
        probs = torch.softmax(classifier.eval()(x.to(device)), 1).cpu()
    args.out.mkdir(parents=True, exist_ok=True)
    arr = x.numpy()
    for i, img in enumerate(arr):
        pixels = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        mode_img = Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))
        mode_img.save(args.out / f"label{label}_{i:04d}.png")
    np.savez_compressed(args.out / "samples.npz", x=arr, labels=np.full(len(arr), label), probs=probs.numpy(), seed=args.seed)
    hit = probs.argmax(1) == label
    emit_json({"out": str(args.out), "label": label, "n": len(arr), "validity": float(hit.float().mean()),
               "confidence": float(probs[:, label].mean())})
    return 0
