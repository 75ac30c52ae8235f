"""Benchmark: training-like data reconstruction scored against members and non-members, with controls (issue 11).

Run from the repository root::

    python bench/reconstruct.py                           # Fashion-MNIST MLP on 500 members (+ digits); ~30 min, one core
    python bench/reconstruct.py --quick --results /tmp/q  # digits MLP on 100 members (minutes)

Each setting trains an MLP on a class-balanced member subset with :func:`netinvert.models.run_training`
(``netinvert train --subset N --subset-seed S``, which records the members and an equal disjoint
non-member set), to near-zero training loss, and reconstructs with
:func:`netinvert.apps.reconstruct.run_reconstruction` (``netinvert reconstruct``):

- ``tldr``: the TLDR preset (nine terms);
- ``plain``: plain inversion (the ``default`` preset), the baseline without the TLDR priors;
- ``per-sample``: each image's pixels optimised directly under the TLDR losses (no generator);
- controls, same TLDR run: a randomly initialised classifier, and the same architecture trained on
  the *non-member* set. There a real leakage signal must vanish (random) or flip sign (trained on the
  non-members); if it does not, the method measures likeness to the dataset, not membership.

All are scored against the same members and non-members by :func:`membership_report`. Writes
``RESULTS/reconstruct.json`` and ``.md`` and copies the galleries to ``RESULTS/reconstruct/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from _machine import commit_record, machine_record
from _results import bench_arguments, machine_line, write_results

from netinvert.apps.reconstruct import ReconstructConfig, run_reconstruction, run_reconstruction_evaluation
from netinvert.data import Dataset, load_dataset
from netinvert.models import (ClassifierRunConfig, TrainConfig, build_model, load_members, run_training, save_classifier,
                              train_classifier)
from netinvert.runs import CARD_NAME, read_card, weights_sha256

log = logging.getLogger("bench.reconstruct")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CACHE = ROOT / ".cache" / "reconstruct"

#: name -> (dataset, members, hidden widths, epochs, weight decay, reconstruction steps)
SETTINGS: dict[str, tuple[str, int, list[int], int, float, int]] = {
    "digits-mlp-100": ("digits", 100, [256, 256], 300, 0.0, 1000),
    "fashion-mlp-500": ("fashion-mnist", 500, [1000, 1000], 200, 0.0, 1500),
}
QUICK = {"digits-mlp-100": ("digits", 100, [256, 256], 200, 0.0, 300)}
METHODS = ("tldr", "plain", "per-sample", "control-random", "control-non-members")
#: Targets of issue 11 (Fashion-MNIST MLP on 500 members).
TARGETS = {"advantage_ci_low": 0.0, "count_ratio_at_0.5": 2.0}


def _classifier(name: str, dataset: str, n: int, hidden: list[int], epochs: int, wd: float, cache: Path) -> Path:
    config = ClassifierRunConfig(dataset=dataset, model="mlp", model_params={"hidden": hidden, "dropout": 0.0},
                                 train=TrainConfig(epochs=epochs, batch_size=100, lr=1e-3, weight_decay=wd),
                                 subset=n, subset_seed=0, seed=0, device="cpu", threads=1)
    run = cache / f"{name}-classifier"
    if not ((run / CARD_NAME).is_file() and ClassifierRunConfig.from_dict(read_card(run)["config"]) == config):
        run_training(config, run, force=True, progress=False)
    return run


def _control(kind: str, members_run: Path, data: Dataset, cache: Path, name: str) -> Path:
    """The control classifiers: random initialisation, or the same recipe trained on the non-members."""
    card = read_card(members_run)
    cfg = ClassifierRunConfig.from_dict(card["config"])
    run = cache / f"{name}-{kind}-classifier"
    if (run / CARD_NAME).is_file() and read_card(run).get("control") == kind \
            and read_card(run).get("members_sha256", card["members"]["sha256"]) == card["members"]["sha256"]:
        return run  # made from these members before (seeded: the same weights)
    torch.manual_seed(1)
    model = build_model(cfg.model, input_shape=data.input_shape, n_classes=data.n_classes, mean=data.mean, std=data.std,
                        **cfg.params)
    if kind == "control-non-members":
        _, non = load_members(members_run)
        part = Dataset(data.name, data.x_train[non], data.y_train[non], data.x_test, data.y_test, data.class_names,
                       data.source, data.mean, data.std)
        train_classifier(model, part, cfg.train, progress=False)
    save_classifier(model.eval(), run, {"dataset": data.name, "control": kind,
                                        "members_sha256": card["members"]["sha256"]})
    return run


def _same_run(card: dict[str, Any], config: ReconstructConfig, classifier: Path) -> bool:
    """Whether a finished reconstruction card is ``config`` on this very classifier (runs from before ``method``
    existed were generator runs)."""
    recorded = {"method": "generator", **(card.get("config") or {})}
    return recorded == config.to_dict() and card.get("classifier_sha256") == weights_sha256(classifier)


def measure(name: str, dataset: str, n: int, hidden: list[int], epochs: int, wd: float, steps: int, cache: Path,
            results: Path) -> dict[str, Any]:
    data = load_dataset(dataset)
    clf = _classifier(name, dataset, n, hidden, epochs, wd, cache)
    card = read_card(clf)
    members, non_members = (data.x_train[i] for i in load_members(clf))
    row: dict[str, Any] = {"name": name, "dataset": dataset, "members": n, "hidden": hidden, "epochs": epochs,
                           "weight_decay": wd, "steps": steps, "test_accuracy": card["test_accuracy"],
                           "final_train_loss": card["history"]["loss"][-1], "methods": {},
                           "classifier_sha256": weights_sha256(clf)}
    figures = results / "reconstruct" / name
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    for method in METHODS:
        target = _control(method, clf, data, cache, name) if method.startswith("control") else clf
        config = ReconstructConfig(classifier=target, preset="default" if method == "plain" else "tldr", steps=steps,
                                   method="per-sample" if method == "per-sample" else "generator", n=n, seed=0,
                                   device="cpu", threads=1)
        out = cache / f"{name}-{method}"
        t0 = time.perf_counter()
        if (out / CARD_NAME).is_file() and _same_run(read_card(out), config, target):  # finished before: rescore it
            result = run_reconstruction_evaluation(out, members=members, non_members=non_members)
            seconds = float(json.loads((out / "metrics.json").read_text())["fit_seconds"])
        else:
            result = run_reconstruction(config, out, force=True, progress=False)
            seconds = time.perf_counter() - t0
        if result.report is None or method.startswith("control"):  # controls: score against the members classifier's
            evaluated = run_reconstruction_evaluation(out, cache / f"{name}-{method}-eval", members=members,
                                                      non_members=non_members, force=True)
            report, gallery = evaluated.report, cache / f"{name}-{method}-eval" / "matches.png"
        else:
            report, gallery = result.report, out / "matches.png"
        shutil.copy(gallery, figures / f"{method}.png")
        row["methods"][method] = {"seconds": seconds, **report}
    return row


def check_targets(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    row = rows.get("fashion-mlp-500")
    if not row:
        return out
    t = row["methods"]["tldr"]
    lo, hi = t["advantage_ci95"]
    out.append({"target": "TLDR advantage > 0 with its 95% interval above 0", "measured": f"{t['advantage']:+.4f} [{lo:+.4f}, {hi:+.4f}]",
                "met": lo > 0})
    m, nm = t["member_counts"][">=0.5"], t["non_member_counts"][">=0.5"]
    out.append({"target": "members matched at SSIM >= 0.5 at least twice as often as non-members",
                "measured": f"{m} vs {nm}", "met": m >= 2 * max(nm, 1) if nm else m > 0})
    for control in ("control-random", "control-non-members"):
        c = row["methods"][control]
        clo, chi = c["advantage_ci95"]
        out.append({"target": f"{control}: no advantage (interval not above 0)", "measured": f"{c['advantage']:+.4f} [{clo:+.4f}, {chi:+.4f}]",
                    "met": clo <= 0})
    p = row["methods"]["plain"]
    out.append({"target": "TLDR beats plain inversion on the advantage", "measured": f"{t['advantage']:+.4f} vs {p['advantage']:+.4f}",
                "met": t["advantage"] > p["advantage"]})
    return out


def render(result: dict[str, Any]) -> str:
    lines = ["# Training-like data reconstruction against members and non-members (bench/reconstruct.py)", "",
             machine_line(result),
             "Advantage: mean SSIM of reconstructions matched one-to-one (Hungarian) to members minus to non-members, "
             "paired bootstrap 95% interval. Haim DSSIM: mean (1 - SSIM)/2 of the best 10 NCC nearest neighbours (lower = closer).", ""]
    if result.get("quick"):
        lines += ["**A `--quick` smoke run**: small budgets, not the committed figures.", ""]
    if result.get("targets"):
        lines += ["## Targets (Fashion-MNIST MLP, 500 members)", "", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |" for t in result["targets"]]
        lines.append("")
    for r in result["runs"]:
        lines += [f"## {r['name']}", "", f"MLP {r['hidden']}, {r['members']} class-balanced members, {r['epochs']} epochs, "
                  f"weight decay {r['weight_decay']}: final training loss {r['final_train_loss']:.4f}, test accuracy "
                  f"{r['test_accuracy']:.3f}; {r['steps']} generator steps per method.", "",
                  "| method | advantage [95% CI] | member / non-member mean SSIM | matched >= 0.5 (members / non) | "
                  ">= 0.6 | Haim DSSIM members / non | seconds |", "|---|---|---|---|---|---|---|"]
        for method, m in r["methods"].items():
            lo, hi = m["advantage_ci95"]
            lines.append(f"| {method} | {m['advantage']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {m['member_mean_ssim']:.3f} / "
                         f"{m['non_member_mean_ssim']:.3f} | {m['member_counts']['>=0.5']} / {m['non_member_counts']['>=0.5']} | "
                         f"{m['member_counts']['>=0.6']} / {m['non_member_counts']['>=0.6']} | {m['haim_member_dssim']:.3f} / "
                         f"{m['haim_non_member_dssim']:.3f} | {m['seconds']:.0f} |")
        lines.append("")
    if result.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    lines.append("Galleries: `bench/results/reconstruct/SETTING/METHOD.png` (best reconstructions, matched member, matched non-member).")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = bench_arguments(__doc__, "reconstruct", RESULTS, CACHE, only=True)
    settings = QUICK if args.quick else SETTINGS
    rows = {n: measure(n, *settings[n], args.cache, args.results) for n in (args.only or settings)}
    result: dict[str, Any] = {"quick": args.quick, "runs": list(rows.values()), "targets": [] if args.quick else check_targets(rows),
                              "commit": commit_record(), "machine": machine_record("cpu")}
    log.info("wrote %s", write_results(args.results, "reconstruct", result, render))


if __name__ == "__main__":
    main()
