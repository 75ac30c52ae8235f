"""Benchmark: train the zoo's CNNs on real data on this machine's CPU and record accuracy and time.

Run from the repository root::

    python bench/classifiers.py                          # digits + Fashion-MNIST + PGD-trained Fashion CNN
    python bench/classifiers.py --quick --results /tmp/q  # digits only, under two minutes

Each classifier is a target of ``bench/_targets.py``, trained by :func:`netinvert.models.run_training`
(the code ``netinvert train`` runs) with a fixed seed into ``bench/.cache/targets/NAME`` (git-ignored), so
the inversion benchmark reuses exactly the models measured here. It writes ``RESULTS/classifiers.json``
and ``RESULTS/classifiers.md`` with one machine record and the sha256 of every set of weights measured
(CPU timings mean nothing without the machine). ``--results`` defaults to ``bench/results``, where the
committed figures live: point a quick run elsewhere. This is a script, not a test: the full run takes
about ten minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from _machine import machine_record
from netinvert.runs import weights_sha256
from _targets import ADV_TRAIN_SUBSET, CACHE, TARGETS

from netinvert.data import Dataset, load_dataset
from netinvert.models import evaluate_classifier, load_classifier_run, pgd_attack, predict, run_training

log = logging.getLogger("bench.classifiers")
ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results"

#: What the full run measures, in order; ``--quick`` measures the first only.
MEASURED = ("digits-cnn", "fashion-cnn", "fashion-cnn-pgd")
#: Rows whose robustness is measured (PGD accuracy).
ROBUSTNESS = ("fashion-cnn", "fashion-cnn-pgd")
#: PGD used to *measure* robustness: stronger than the training attack.
EVAL_PGD = {"eps": 0.1, "steps": 10, "n": 1000}
#: Row names in the table (the digits row is ``netinvert train`` with its defaults).
LABELS = {"digits-cnn": "digits-cnn (netinvert train defaults)"}


def robust_accuracy(model: torch.nn.Module, data: Dataset, eps: float, steps: int, n: int) -> float:
    """Accuracy under L-inf PGD (random start) on the first ``n`` test images."""
    x, y = data.x_test[:n], data.y_test[:n]
    gen = torch.Generator().manual_seed(0)
    x_adv = torch.cat([pgd_attack(model, x[i : i + 250], y[i : i + 250], eps, steps, gen) for i in range(0, n, 250)])
    return float((predict(model, x_adv) == y).float().mean())


def _shown(path: Path) -> str:
    """A path relative to the repository when it lies inside it (results never name a home folder)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def measure(name: str, cache: Path, data: Dataset) -> dict[str, Any]:
    """Train target ``name`` with the pipeline, reload it from its run folder and return its result row."""
    config = TARGETS[name]
    result = run_training(config, cache / name, force=True, progress=False)
    model, card = load_classifier_run(result.run_dir)
    row = {
        "name": LABELS.get(name, name),
        "target": name,
        "dataset": result.dataset,
        "model": result.model,
        "model_params": {k: v for k, v in card["model_params"].items() if k not in ("mean", "std")},
        "n_params": sum(p.numel() for p in model.parameters()),
        "train_config": config.train.to_dict(),
        "n_train": card["n_train"],
        "n_test": result.n_test,
        "test_accuracy": result.test_accuracy,
        "history": card["history"],
        "train_seconds": result.train_seconds,
        "reloaded_test_accuracy": evaluate_classifier(model, data.x_test, data.y_test),
        "run_folder": _shown(result.run_dir),
        "weights_sha256": weights_sha256(result.run_dir),
    }
    if name in ROBUSTNESS:
        row["pgd_accuracy"] = robust_accuracy(model, data, **EVAL_PGD)
    log.info("%s: test accuracy %.4f in %.1fs", name, result.test_accuracy, result.train_seconds)
    return row


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    m = result["machine"]
    lines = [
        "# Classifier benchmark" + (" (quick: digits only)" if result.get("quick") else ""),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['threads']} thread(s), "
        f"Python {m['python']}; load average at the end {m['load_avg_1_5_15']} "
        "(other jobs shared the CPU, so the seconds are upper bounds).",
        "",
        "| run | dataset | model | train images | epochs | params | test accuracy | PGD accuracy | train s | weights sha256 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["runs"]:
        pgd = f"{r['pgd_accuracy']:.3f}" if r.get("pgd_accuracy") is not None else "-"
        arch = r["model"] + " " + ",".join(f"{k}={v}" for k, v in r["model_params"].items()
                                             if k in ("channels", "hidden", "convs_per_block"))
        lines.append(
            f"| {r['name']} | {r['dataset']} | {arch} | {r['n_train']} | {r['train_config']['epochs']} | {r['n_params']} | "
            f"{r['test_accuracy']:.4f} | {pgd} | {r['train_seconds']:.1f} | `{r['weights_sha256'][:12]}` |"
        )
    e = result["eval_pgd"]
    adv = TARGETS["fashion-cnn-pgd"].train
    measured = {r["target"] for r in result["runs"]}
    if measured & set(ROBUSTNESS):
        lines += ["", f"PGD accuracy: L-inf PGD, eps={e['eps']}, {e['steps']} steps, random start, first {e['n']} test images."]
    if "fashion-cnn-pgd" in measured:
        lines.append(f"The adversarially trained CNN used PGD with eps={adv.adv_eps}, {adv.adv_steps} steps during "
                     f"training on a {ADV_TRAIN_SUBSET}-image subset.")
    lines += [
        "",
        "Train seconds include the per-epoch test evaluation. Not included: loading the data"
        + (f" (Fashion-MNIST: {result['fashion_load_seconds']:.1f} s)" if result.get("fashion_load_seconds") else "")
        + f" and torch's one-off import of its compiler when the first optimiser is built "
        f"({result['first_optimizer_seconds']:.1f} s).",
        "",
        "Each row is a target of `bench/_targets.py`, trained by `netinvert.models.run_training` into "
        "`bench/.cache/targets/NAME`. Reproduce: `python bench/classifiers.py` (writes this file and classifiers.json). "
        "The fashion-cnn row matches `netinvert train --dataset fashion-mnist --model cnn --model-param "
        "'channels=[16,32]' --model-param convs_per_block=1 --epochs {0.epochs} --batch-size {0.batch_size} "
        "--lr {0.lr} --device cpu --threads 1 --out DIR`.".format(TARGETS["fashion-cnn"].train),
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only (under two minutes): a smoke check")
    parser.add_argument("--skip-adversarial", action="store_true", help="leave out the PGD-trained Fashion CNN")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder for classifiers.json and .md (default: bench/results, the committed figures)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the trained targets go (default: bench/.cache/targets)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    names = MEASURED[:1] if args.quick else tuple(n for n in MEASURED if not (args.skip_adversarial and n == "fashion-cnn-pgd"))
    torch.set_num_threads(1)  # the targets train with one thread; the PGD evaluation uses the same
    result: dict[str, Any] = {"quick": args.quick, "eval_pgd": EVAL_PGD, "runs": []}
    # torch imports torch._dynamo when the first optimiser is built (seconds, once per process);
    # pay it here so the first row's time is training, and record it separately.
    t0 = time.perf_counter()
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    result["first_optimizer_seconds"] = time.perf_counter() - t0

    loaded: dict[str, Dataset] = {}
    for name in names:
        dataset = TARGETS[name].dataset
        if dataset not in loaded:
            t0 = time.perf_counter()
            loaded[dataset] = load_dataset(dataset, TARGETS[name].data_root)
            if dataset == "fashion-mnist":
                result["fashion_load_seconds"] = time.perf_counter() - t0
        result["runs"].append(measure(name, args.cache, loaded[dataset]))

    result["machine"] = machine_record("cpu")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "classifiers.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(args.results / "classifiers.md", result)
    log.info("wrote %s and %s", args.results / "classifiers.json", args.results / "classifiers.md")


if __name__ == "__main__":
    main()
