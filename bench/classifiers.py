"""Benchmark: train the zoo's CNNs on real data on this machine's CPU and record accuracy and time.

Run from the repository root::

    python bench/classifiers.py                 # digits + Fashion-MNIST + PGD-trained Fashion CNN
    python bench/classifiers.py --skip-adversarial --fashion-run /work/fashion_cnn_run

It writes ``bench/results/classifiers.json`` and ``bench/results/classifiers.md`` (machine, torch
version and threads included, since CPU timings mean nothing without them) and saves the trained
Fashion-MNIST CNN as a run folder that ``netinvert evaluate`` and the inversion commands accept.
This is a script, not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from _machine import cpu_model

from netinvert import __version__
from netinvert._device import seed_everything
from netinvert.data import Dataset, load_dataset
from netinvert.models import (
    TrainConfig,
    build_model,
    evaluate_classifier,
    load_classifier_run,
    pgd_attack,
    predict,
    save_classifier,
    train_classifier,
)

log = logging.getLogger("bench.classifiers")
RESULTS = Path(__file__).parent / "results"

#: The Fashion-MNIST CNN: one conv per block keeps an epoch around a minute on one busy core.
FASHION_MODEL = {"channels": [16, 32], "hidden": 128, "dropout": 0.3, "convs_per_block": 1}
FASHION_CONFIG = TrainConfig(epochs=4, batch_size=128, lr=3e-3, seed=0, device="cpu")
#: PGD training costs (adv_steps + 1) forward/backward passes per batch, so it sees a subset.
ADV_CONFIG = TrainConfig(epochs=3, batch_size=128, lr=3e-3, seed=0, adv_eps=0.1, adv_steps=3, device="cpu")
ADV_TRAIN_SUBSET = 20_000
#: PGD used to *measure* robustness: stronger than the training attack.
EVAL_PGD = {"eps": 0.1, "steps": 10, "n": 1000}


def machine() -> dict[str, Any]:
    """CPU model, core count, torch version and thread setting."""
    return {
        "cpu": cpu_model("unknown"),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "netinvert": __version__,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def robust_accuracy(model: torch.nn.Module, data: Dataset, eps: float, steps: int, n: int) -> float:
    """Accuracy under L-inf PGD (random start) on the first ``n`` test images."""
    x, y = data.x_test[:n], data.y_test[:n]
    gen = torch.Generator().manual_seed(0)
    x_adv = torch.cat([pgd_attack(model, x[i : i + 250], y[i : i + 250], eps, steps, gen) for i in range(0, n, 250)])
    return float((predict(model, x_adv) == y).float().mean())


def train_one(name: str, data: Dataset, model_params: dict[str, Any], config: TrainConfig, model: str = "cnn") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Seed, build, train and evaluate one classifier; return it and its result row."""
    seed_everything(config.seed)
    clf = build_model(model, input_shape=data.input_shape, n_classes=data.n_classes, mean=data.mean, std=data.std, **model_params)
    t0 = time.perf_counter()
    history = train_classifier(clf, data, config, progress=False)
    seconds = time.perf_counter() - t0
    acc = evaluate_classifier(clf, data.x_test, data.y_test)
    row = {
        "name": name,
        "dataset": data.name,
        "model": model,
        "model_params": {k: v for k, v in clf.get_params().items() if k not in ("mean", "std")},
        "n_params": sum(p.numel() for p in clf.parameters()),
        "train_config": config.to_dict(),
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "test_accuracy": acc,
        "history": history,
        "train_seconds": seconds,
    }
    log.info("%s: test accuracy %.4f in %.1fs", name, acc, seconds)
    return clf, row


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    m = result["machine"]
    lines = [
        "# Classifier benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} thread(s), "
        f"Python {m['python']}; load average at start {[round(v, 1) for v in m['load_average_at_start']]} "
        "(other jobs shared the CPU, so the seconds are upper bounds).",
        "",
        "| run | dataset | model | train images | epochs | params | test accuracy | PGD accuracy | train s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        pgd = f"{r['pgd_accuracy']:.3f}" if r.get("pgd_accuracy") is not None else "-"
        arch = r["model"] + " " + ",".join(f"{k}={v}" for k, v in r["model_params"].items()
                                             if k in ("channels", "hidden", "convs_per_block"))
        lines.append(
            f"| {r['name']} | {r['dataset']} | {arch} | {r['n_train']} | {r['train_config']['epochs']} | {r['n_params']} | "
            f"{r['test_accuracy']:.4f} | {pgd} | {r['train_seconds']:.1f} |"
        )
    e = result["eval_pgd"]
    lines += [
        "",
        f"PGD accuracy: L-inf PGD, eps={e['eps']}, {e['steps']} steps, random start, first {e['n']} test images.",
        "The adversarially trained CNN used PGD with eps={0}, {1} steps during training on a {2}-image subset.".format(
            ADV_CONFIG.adv_eps, ADV_CONFIG.adv_steps, ADV_TRAIN_SUBSET),
        "",
        "Train seconds include the per-epoch test evaluation. Not included: loading Fashion-MNIST "
        f"({result['fashion_load_seconds']:.1f} s) and torch's one-off import of its compiler when the first "
        f"optimiser is built ({result['first_optimizer_seconds']:.1f} s).",
        "",
        "Reproduce: `python bench/classifiers.py` (writes this file and classifiers.json). The Fashion-MNIST row "
        "matches `netinvert train --dataset fashion-mnist --model cnn --model-param 'channels=[16,32]' "
        "--model-param convs_per_block=1 --epochs {0} --batch-size {1} --lr {2} --out DIR`.".format(
            FASHION_CONFIG.epochs, FASHION_CONFIG.batch_size, FASHION_CONFIG.lr),
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    parser.add_argument("--fashion-run", type=Path, default=Path("/work/fashion_cnn_run"),
                        help="where to save the Fashion-MNIST CNN run folder")
    parser.add_argument("--skip-adversarial", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"machine": machine(), "eval_pgd": EVAL_PGD, "runs": []}
    # torch imports torch._dynamo when the first optimiser is built (seconds, once per process);
    # pay it here so the first row's time is training, and record it separately.
    t0 = time.perf_counter()
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    result["first_optimizer_seconds"] = time.perf_counter() - t0

    digits = load_dataset("digits")
    _, row = train_one("digits-cnn (netinvert train defaults)", digits, {}, TrainConfig(device="cpu"))
    result["runs"].append(row)

    t0 = time.perf_counter()
    fashion = load_dataset("fashion-mnist")
    result["fashion_load_seconds"] = time.perf_counter() - t0
    clf, row = train_one("fashion-cnn", fashion, FASHION_MODEL, FASHION_CONFIG)
    row["pgd_accuracy"] = robust_accuracy(clf, fashion, **EVAL_PGD)
    result["runs"].append(row)
    card = {"dataset": fashion.name, "dataset_info": fashion.describe(), "data_root": None,
            "train_config": FASHION_CONFIG.to_dict(), "device": "cpu", "seed": FASHION_CONFIG.seed,
            "test_accuracy": row["test_accuracy"], "n_test": row["n_test"], "train_seconds": row["train_seconds"],
            "history": row["history"], "written_by": "bench/classifiers.py"}
    save_classifier(clf, args.fashion_run, card)
    reloaded, _ = load_classifier_run(args.fashion_run)
    row["reloaded_test_accuracy"] = evaluate_classifier(reloaded, fashion.x_test, fashion.y_test)
    row["run_folder"] = str(args.fashion_run)

    if not args.skip_adversarial:
        subset = fashion.subset(n_train=ADV_TRAIN_SUBSET, seed=0)
        clf_adv, row = train_one("fashion-cnn-pgd", subset, FASHION_MODEL, ADV_CONFIG)
        row["pgd_accuracy"] = robust_accuracy(clf_adv, fashion, **EVAL_PGD)
        result["runs"].append(row)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "classifiers.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(RESULTS / "classifiers.md", result)
    log.info("wrote %s and %s", RESULTS / "classifiers.json", RESULTS / "classifiers.md")


if __name__ == "__main__":
    main()
