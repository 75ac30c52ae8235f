"""Benchmark: training-like data reconstruction scored against members and non-members, with controls (issue 11).

Run from the repository root::

    python bench/reconstruct.py                           # Fashion-MNIST MLP on 500 members (+ digits); ~30 min, one core
    python bench/reconstruct.py --quick --results /tmp/q  # digits MLP on 100 members (minutes)

Each setting trains an MLP (or netinvert's CNN, dropout off) on a class-balanced member subset with
:func:`netinvert.models.run_training`
(``netinvert train --subset N --subset-seed S``, which records the members and an equal disjoint
non-member set), to near-zero training loss, and reconstructs with
:func:`netinvert.apps.reconstruct.run_reconstruction` (``netinvert reconstruct``):

- ``tldr``: the TLDR preset (nine terms);
- ``plain``: plain inversion (the ``default`` preset), the baseline without the TLDR priors;
- ``per-sample``: each image's pixels optimised directly under the TLDR losses (no generator);
- ``kkt``: the KKT attack of Haim et al. (2022) in Buzaglo et al.'s (2023) multi-class form, the strongest
  public reconstruction attack, at its own budget (its regime: the ``-sgd-wd`` settings, full-batch SGD
  with weight decay);
- ``tldr-selected``: TLDR with the weights chosen on a *validation* model (the same recipe trained on
  another member draw, ``--subset-seed 1``, scored against its own members and non-members); the scored
  model's members and non-members play no part in the choice;
- controls, same TLDR run: a randomly initialised classifier, and the same architecture trained on
  the *non-member* set. There a real leakage signal must vanish (random) or flip sign (trained on the
  non-members); if it does not, the method measures likeness to the dataset, not membership.

All are scored against the same members and non-members by :func:`membership_report`. The digits
setting also gets a per-term ablation of the selected TLDR weights (each term dropped in turn). Writes
``RESULTS/reconstruct.json`` and ``.md`` and copies the galleries to ``RESULTS/reconstruct/``; ``--only``
replaces those settings' rows and keeps the others.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from _machine import commit_record, machine_record
from _results import bench_arguments, machine_line, write_results

from netinvert.apps.reconstruct import ReconstructConfig, run_reconstruction, run_reconstruction_evaluation
from netinvert.inversion import preset
from netinvert.data import Dataset, load_dataset
from netinvert.models import (ClassifierRunConfig, TrainConfig, build_model, load_members, run_training, save_classifier,
                              train_classifier)
from netinvert.runs import CARD_NAME, read_card, weights_sha256

log = logging.getLogger("bench.reconstruct")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CACHE = ROOT / ".cache" / "reconstruct"

@dataclass(frozen=True)
class Setting:
    """One row group: a member-tracked classifier recipe and the reconstruction budgets."""

    dataset: str
    members: int
    hidden: tuple[int, ...]  # the MLP's widths (the CNN keeps its defaults)
    epochs: int
    weight_decay: float
    steps: int  # generator / per-sample steps
    optimizer: str = "adamw"
    batch_size: int = 100
    lr: float = 1e-3
    kkt_steps: int = 2000
    kkt_seconds: float | None = None  # the KKT attack's wall-clock cap (its double backward is the costliest step)
    eval_every: int = 1
    methods: tuple[str, ...] = field(default=())
    #: the setting whose validation model chooses the TLDR weights (default: this one); its budget for each weight set
    selection: str | None = None
    selection_steps: int | None = None
    model: str = "mlp"

    def model_params(self) -> dict[str, Any]:
        """No dropout: the members are to be fitted to (near) zero training loss."""
        return {"hidden": list(self.hidden), "dropout": 0.0} if self.model == "mlp" else {"dropout": 0.0}

    def train(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           optimizer=self.optimizer, eval_every=self.eval_every)


METHODS = ("tldr", "tldr-selected", "plain", "per-sample", "kkt", "control-random", "control-non-members")
SETTINGS: dict[str, Setting] = {
    "digits-mlp-100": Setting("digits", 100, (256, 256), 300, 0.0, 1000),
    # five times the members (members and non-members take 1,000 of the 1,437 training digits)
    "digits-mlp-500": Setting("digits", 500, (256, 256), 300, 0.0, 1000,
                              methods=("tldr", "tldr-selected", "plain", "per-sample", "control-random",
                                       "control-non-members")),
    "fashion-mlp-500": Setting("fashion-mnist", 500, (1000, 1000), 200, 0.0, 1500, selection_steps=500, kkt_seconds=900),
    # the KKT attack's regime: full-batch SGD with weight decay, trained to a stationary point; the TLDR weights are
    # those chosen for Fashion-MNIST on fashion-mlp-500's validation model
    "fashion-mlp-500-sgd-wd": Setting("fashion-mnist", 500, (1000, 1000), 3000, 1e-3, 1500, optimizer="sgd",
                                      batch_size=500, lr=0.05, eval_every=300, selection="fashion-mlp-500", kkt_seconds=1200,
                                      methods=("kkt", "tldr", "tldr-selected", "control-random", "control-non-members")),
    # four times the members (the largest subset): the MLP recipe of fashion-mlp-500 and its chosen weights;
    # no per-sample row: one batch of 2,000 images under the Gram and weight-gradient terms ran past 18 minutes
    "fashion-mlp-2000": Setting("fashion-mnist", 2000, (1000, 1000), 200, 0.0, 1500, selection="fashion-mlp-500",
                                methods=("tldr-selected", "control-random", "control-non-members")),
    # the CNN (netinvert's default classifier: conv + batch norm, its dropout off) beside the MLPs; no KKT, whose
    # stationarity conditions hold for homogeneous nets trained by gradient flow, which batch norm is not
    "digits-cnn-100": Setting("digits", 100, (), 300, 0.0, 1000, model="cnn",
                              methods=("tldr", "tldr-selected", "plain", "per-sample", "control-random",
                                       "control-non-members")),
    # (per-sample left out: the CNN under the weight-gradient and perturbed terms ran past 54 minutes on one core, the
    # TLDR generator 11)
    "fashion-cnn-500": Setting("fashion-mnist", 500, (), 200, 0.0, 1500, model="cnn", eval_every=25,
                               methods=("tldr", "control-random", "control-non-members")),
}
QUICK = {"digits-mlp-100": Setting("digits", 100, (256, 256), 200, 0.0, 300, kkt_steps=300)}
#: TLDR weight sets tried on the validation model (fixed before any run): the preset, and the two terms that
#: overpowered CE in development (grad_norm, cosine) with orthogonality turned down 10x and 100x.
WEIGHT_SETS: dict[str, tuple[str, ...]] = {
    "preset": tuple(preset("tldr")["losses"]),
    "priors-0.1": ("kl:1", "ce:1", "kl_perturbed:1", "ce_perturbed:1", "cosine:0.1", "ortho:0.1", "tv:0.05", "range:1",
                   "grad_norm:0.1"),
    "priors-0.01": ("kl:1", "ce:1", "kl_perturbed:1", "ce_perturbed:1", "cosine:0.01", "ortho:0.01", "tv:0.05", "range:1",
                    "grad_norm:0.01"),
}
#: Targets of issue 11 (Fashion-MNIST MLP, 500 members), checked on each Fashion setting.
TARGET_SETTINGS = ("fashion-mlp-500", "fashion-mlp-500-sgd-wd")


def _classifier(name: str, st: Setting, cache: Path, subset_seed: int = 0) -> Path:
    config = ClassifierRunConfig(dataset=st.dataset, model=st.model, model_params=st.model_params(),
                                 train=st.train(), subset=st.members, subset_seed=subset_seed, seed=0, device="cpu",
                                 threads=1)
    run = cache / (f"{name}-classifier" if subset_seed == 0 else f"{name}-validation-classifier")
    if not ((run / CARD_NAME).is_file() and ClassifierRunConfig.from_dict(read_card(run)["config"]) == config):
        run_training(config, run, force=True, progress=False)
    return run


def _reconstruct(config: ReconstructConfig, out: Path, members: Any, non_members: Any) -> tuple[dict[str, Any], float, Path]:
    """Run (or re-score a finished run of) ``config`` into ``out``; its report against these members, seconds, gallery."""
    t0 = time.perf_counter()
    target = Path(config.classifier)
    if (out / CARD_NAME).is_file() and _same_run(read_card(out), config, target):  # finished before: rescore it
        seconds = float(json.loads((out / "metrics.json").read_text())["fit_seconds"])
    else:
        run_reconstruction(config, out, force=True, progress=False)
        seconds = time.perf_counter() - t0
    evaluated = run_reconstruction_evaluation(out, out.with_name(out.name + "-eval"), members=members,
                                              non_members=non_members, force=True)
    return evaluated.report, seconds, out.with_name(out.name + "-eval") / "matches.png"


def select_weights(name: str, st: Setting, data: Dataset, cache: Path) -> dict[str, Any]:
    """Choose the TLDR weights on a validation model: the same recipe on another member draw, its own members."""
    if st.selection not in (None, name):
        name, st = st.selection, SETTINGS[st.selection]
    clf = _classifier(name, st, cache, subset_seed=1)
    members, non_members = (data.x_train[i] for i in load_members(clf))
    tried = {}
    for label, losses in WEIGHT_SETS.items():
        config = ReconstructConfig(classifier=clf, preset="tldr", losses=losses, steps=st.selection_steps or st.steps,
                                   n=st.members, seed=0, device="cpu", threads=1)
        report, seconds, _ = _reconstruct(config, cache / f"{name}-validation-{label}", members, non_members)
        tried[label] = {"advantage": report["advantage"], "advantage_ci95": report["advantage_ci95"],
                        "member_mean_ssim": report["member_mean_ssim"], "seconds": seconds}
        log.info("%s validation %s: advantage %+.4f", name, label, report["advantage"])
    chosen = max(tried, key=lambda k: tried[k]["advantage"])
    return {"chosen": chosen, "losses": list(WEIGHT_SETS[chosen]), "tried": tried, "validation_setting": name,
            "steps": st.selection_steps or st.steps, "validation_classifier_sha256": weights_sha256(clf)}


def ablation(name: str, st: Setting, losses: list[str], clf: Path, members: Any, non_members: Any,
             cache: Path) -> dict[str, Any]:
    """Each TLDR term dropped in turn from ``losses`` (scored like the methods: what each term adds)."""
    rows = {}
    for term in losses:
        kept = tuple(t for t in losses if t != term)
        config = ReconstructConfig(classifier=clf, preset="tldr", losses=kept, steps=st.steps, n=st.members, seed=0,
                                   device="cpu", threads=1)
        report, seconds, _ = _reconstruct(config, cache / f"{name}-ablation-{term.split(':')[0]}", members, non_members)
        rows[term] = {"seconds": seconds, **report}
    return rows


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
    """Whether a finished reconstruction card is ``config`` on this very classifier (its weights, wherever its folder
    lies; runs from before ``method`` and ``kkt_candidates`` existed were generator runs with the default)."""
    recorded = {"method": "generator", "kkt_candidates": 2.0, **(card.get("config") or {})}
    wanted = config.to_dict()
    recorded.pop("classifier", None)
    wanted.pop("classifier")
    return recorded == wanted and card.get("classifier_sha256") == weights_sha256(classifier)


def measure(name: str, st: Setting, cache: Path, results: Path) -> dict[str, Any]:
    data = load_dataset(st.dataset)
    clf = _classifier(name, st, cache)
    card = read_card(clf)
    members, non_members = (data.x_train[i] for i in load_members(clf))
    row: dict[str, Any] = {"name": name, "dataset": st.dataset, "members": st.members, "model": st.model, "hidden": list(st.hidden),
                           "epochs": st.epochs, "weight_decay": st.weight_decay, "optimizer": st.optimizer,
                           "batch_size": st.batch_size, "lr": st.lr, "steps": st.steps, "kkt_steps": st.kkt_steps,
                           "test_accuracy": card["test_accuracy"], "final_train_loss": card["history"]["loss"][-1],
                           "methods": {}, "classifier_sha256": weights_sha256(clf)}
    figures = results / "reconstruct" / name
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    for method in st.methods or METHODS:
        target = _control(method, clf, data, cache, name) if method.startswith("control") else clf
        kind = {"per-sample": "per-sample", "kkt": "kkt"}.get(method, "generator")
        chosen = None
        if method == "tldr-selected":  # chosen when first needed, so the methods before it do not wait for it
            row["selection"] = select_weights(name, st, data, cache)
            if row["selection"]["chosen"] != "preset":  # the preset: tldr's very run
                chosen = tuple(row["selection"]["losses"])
        config = ReconstructConfig(classifier=target, preset="default" if method == "plain" else "tldr",
                                   losses=chosen if method == "tldr-selected" else None,
                                   steps=st.kkt_steps if method == "kkt" else st.steps,
                                   seconds=st.kkt_seconds if method == "kkt" else None, method=kind, n=st.members, seed=0,
                                   device="cpu", threads=1)
        report, seconds, gallery = _reconstruct(config, cache / f"{name}-{method}", members, non_members)
        shutil.copy(gallery, figures / f"{method}.png")
        row["methods"][method] = {"seconds": seconds, **report}
        log.info("%s %s: advantage %+.4f (%.0f s)", name, method, report["advantage"], seconds)
    if st.dataset == "digits" and "selection" in row:
        row["ablation"] = ablation(name, st, row["selection"]["losses"], clf, members, non_members, cache)
    return row


def check_targets(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in TARGET_SETTINGS:
        row = rows.get(name)
        if not row:
            continue
        ours = [m for m in ("tldr", "tldr-selected") if m in row["methods"]]
        for method in ours:
            t = row["methods"][method]
            lo, hi = t["advantage_ci95"]
            out.append({"setting": name, "target": f"{method} advantage > 0 with its 95% interval above 0",
                        "measured": f"{t['advantage']:+.4f} [{lo:+.4f}, {hi:+.4f}]", "met": lo > 0})
            m, nm = t["member_counts"][">=0.5"], t["non_member_counts"][">=0.5"]
            out.append({"setting": name, "target": f"{method}: members matched at SSIM >= 0.5 at least twice as often as "
                        "non-members", "measured": f"{m} vs {nm}", "met": m >= 2 * nm and m > 0})
            for baseline in (b for b in ("plain", "per-sample") if b in row["methods"]):
                b = row["methods"][baseline]
                out.append({"setting": name, "target": f"{method} beats {baseline} on the advantage",
                            "measured": f"{t['advantage']:+.4f} vs {b['advantage']:+.4f}", "met": t["advantage"] > b["advantage"]})
        for control in (c for c in ("control-random", "control-non-members") if c in row["methods"]):
            c = row["methods"][control]
            clo, chi = c["advantage_ci95"]
            out.append({"setting": name, "target": f"{control}: no advantage (interval not above 0)",
                        "measured": f"{c['advantage']:+.4f} [{clo:+.4f}, {chi:+.4f}]", "met": clo <= 0})
        if not ours or "kkt" not in row["methods"]:
            continue
        best = max(ours, key=lambda k: row["methods"][k]["advantage"])
        k = row["methods"]["kkt"]
        out.append({"setting": name, "target": "moonshot: TLDR's advantage at least KKT's (wall-clock in the table)",
                    "measured": f"{best} {row['methods'][best]['advantage']:+.4f} vs kkt {k['advantage']:+.4f}",
                    "met": row["methods"][best]["advantage"] >= k["advantage"]})
    return out


def _method_rows(methods: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| method | advantage [95% CI] | member / non-member mean SSIM | matched >= 0.5 (members / non) | "
             ">= 0.6 | Haim DSSIM members / non | seconds |", "|---|---|---|---|---|---|---|"]
    for method, m in methods.items():
        lo, hi = m["advantage_ci95"]
        lines.append(f"| {method} | {m['advantage']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {m['member_mean_ssim']:.3f} / "
                     f"{m['non_member_mean_ssim']:.3f} | {m['member_counts']['>=0.5']} / {m['non_member_counts']['>=0.5']} | "
                     f"{m['member_counts']['>=0.6']} / {m['non_member_counts']['>=0.6']} | {m['haim_member_dssim']:.3f} / "
                     f"{m['haim_non_member_dssim']:.3f} | {m['seconds']:.0f} |")
    return lines


def render(result: dict[str, Any]) -> str:
    lines = ["# Training-like data reconstruction against members and non-members (bench/reconstruct.py)", "",
             machine_line(result),
             "Advantage: mean SSIM of reconstructions matched one-to-one (Hungarian) to members minus to non-members, "
             "paired bootstrap 95% interval. Haim DSSIM: mean (1 - SSIM)/2 of the best 10 NCC nearest neighbours (lower = closer).", ""]
    if result.get("quick"):
        lines += ["**A `--quick` smoke run**: small budgets, not the committed figures.", ""]
    if result.get("targets"):
        lines += ["## Targets (Fashion-MNIST MLP, 500 members)", "", "| setting | target | measured | met |", "|---|---|---|---|"]
        lines += [f"| {t.get('setting', 'fashion-mlp-500')} | {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |"
                  for t in result["targets"]]
        lines.append("")
    for r in result["runs"]:
        regime = f"{r.get('optimizer', 'adamw')}, batch {r.get('batch_size', 100)}, lr {r.get('lr', 0.001)}"
        arch = f"MLP {r['hidden']}" if r.get("model", "mlp") == "mlp" else f"{r['model'].upper()} (netinvert's, dropout off)"
        lines += [f"## {r['name']}", "", f"{arch}, {r['members']} class-balanced members, {r['epochs']} epochs "
                  f"({regime}), weight decay {r['weight_decay']}: final training loss {r['final_train_loss']:.4f}, test "
                  f"accuracy {r['test_accuracy']:.3f}; {r['steps']} generator / per-sample steps, "
                  f"{r.get('kkt_steps', '-') if 'kkt' in r['methods'] else 'no'} KKT steps.", "", *_method_rows(r["methods"]), ""]
        sel = r.get("selection")
        if sel:
            lines += [f"TLDR weights chosen on the validation model (same recipe, members drawn with subset seed 1, scored "
                      f"against its own members and non-members): **{sel['chosen']}** ({', '.join(sel['losses'])}).", "",
                      "| weight set | validation advantage [95% CI] | member mean SSIM | seconds |", "|---|---|---|---|"]
            for label, t in sel["tried"].items():
                lo, hi = t["advantage_ci95"]
                lines.append(f"| {label} | {t['advantage']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {t['member_mean_ssim']:.3f} | "
                             f"{t['seconds']:.0f} |")
            lines.append("")
        if r.get("ablation"):
            lines += ["Ablation (scored model): the selected TLDR weights with one term dropped.", "",
                      *_method_rows({f"without {term}": m for term, m in r["ablation"].items()}), ""]
    if result.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    lines.append("Galleries: `bench/results/reconstruct/SETTING/METHOD.png` (best reconstructions, matched member, matched non-member).")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = bench_arguments(__doc__, "reconstruct", RESULTS, CACHE, only=True)
    settings = QUICK if args.quick else SETTINGS
    rows = {n: measure(n, settings[n], args.cache, args.results) for n in (args.only or settings)}
    previous = args.results / "reconstruct.json"
    if args.only and previous.is_file():  # keep the settings not measured this time
        kept = {r["name"]: r for r in json.loads(previous.read_text())["runs"] if r["name"] not in rows}
        rows = {**kept, **rows}
    result: dict[str, Any] = {"quick": args.quick, "runs": list(rows.values()), "targets": [] if args.quick else check_targets(rows),
                              "commit": commit_record(), "machine": machine_record("cpu")}
    log.info("wrote %s", write_results(args.results, "reconstruct", result, render))


if __name__ == "__main__":
    main()
