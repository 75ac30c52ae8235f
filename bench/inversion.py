"""Benchmark of generator inversion (issue 3, section 5): digits, Fashion-MNIST, a robust target,
an ablation, amortisation against per-sample pixel optimisation, and inversion through a learned
image prior (tier f).

Not a test: it takes about 40 minutes of wall time on two loaded cores. Each tier can run in its
own process (``--tiers b,e`` in one, ``--tiers c,d`` in another); every tier writes its rows to
``CACHE/tiers/<tier>.json`` and every invocation then merges whatever tiers exist into
``RESULTS/inversion.json`` and ``RESULTS/inversion.md`` (with the machine it ran on; ``RESULTS`` is
``bench/results`` unless ``--results``). Grids of 10 samples per class go to ``RESULTS/inversion/<row>.png``.

Every row is one :func:`netinvert.inversion.run_inversion` call (the code ``netinvert invert`` runs), writing
its run folder to ``CACHE/runs/<row>``; the target classifiers are ``bench/_targets.ensure_target``'s
(trained by the committed pipeline into ``bench/.cache/targets`` when missing) unless ``--fashion-run`` /
``--robust-run`` name others. Rows record the sha256 of the classifier they measured.

Usage::

    python bench/inversion.py --tiers a,b,c,d,e,f
    python bench/inversion.py --merge-only
    python bench/inversion.py --quick --results /tmp/inversion-smoke   # a smoke check in a few minutes

Budgets are wall-clock seconds of generator training at one torch thread; metrics are computed afterwards
on 100 samples per class by :func:`netinvert.metrics.inversion_metrics` with verifiers cached in ``CACHE``
(``bench/.cache``, ignored by git).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _machine import machine_record
from _targets import ensure_target
from PIL import Image

from netinvert.data import load_dataset
from netinvert.inversion import (DEFAULT_LOSSES, InversionRunConfig, Inverter, LossContext, PriorRunConfig, capture_bn_stats,
                                 load_image_prior, make_augmentation, make_conditioning, make_objective, preset, run_image_prior,
                                 run_inversion)
from netinvert.metrics import inversion_metrics, train_verifiers, validity_report
from netinvert.models import load_classifier_run
from netinvert.report import save_class_grid
from netinvert.runs import read_card, weights_sha256

log = logging.getLogger("bench.inversion")

ROOT = Path(__file__).resolve().parent
N_PER_CLASS = 100
GRID_PER_CLASS = 10

#: The papers' seed losses: KL, CE, cosine and orthogonality, vector conditioning at T = 1, dropout 0.5.
SEED_SETTINGS: dict[str, Any] = {"losses": ("kl:5", "ce:10", "cosine:10", "ortho:7"), "dropout": 0.5,
                                 "conditioning": ("vector", {"temperature": 1.0})}

#: The issue's targets per benchmark family: (metric path, comparison, bound); "within10" compares to the real figure.
TARGETS: dict[str, list[tuple[str, str, Any]]] = {
    "digits": [("validity", ">=", 0.98), ("verifier_accuracy.robust", ">=", 0.9), ("diversity.classifier", "within10", None),
               ("diversity.verifier", "within10", None), ("diversity.pixel", "within10", None)],
    "fashion": [("validity", ">=", 0.95), ("verifier_accuracy.robust", ">=", 0.6), ("diversity.verifier", "within10", None),
                ("diversity.pixel", "within10", None), ("frechet.generated", "half_seed", None)],
}


# ---------------------------------------------------------------------------------------------- helpers
def _get(d: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if d is None:
            return None
        d = d.get(key)
    return d


def _check_targets(family: str, metrics: dict[str, Any], seed_frechet: float | None) -> dict[str, str]:
    out = {}
    for path, op, bound in TARGETS.get(family, []):
        value = _get(metrics, path)
        if value is None:
            out[path] = "n/a"
            continue
        if op == ">=":
            ok = value >= bound
        elif op == "within10":
            real = _get(metrics, "real_" + path)
            ok = real is not None and abs(value - real) <= 0.1 * abs(real)
        else:  # half_seed
            if seed_frechet is None:
                out[path] = "n/a (no seed run)"
                continue
            ok = value <= 0.5 * seed_frechet
        out[path] = "pass" if ok else "miss"
    return out


def _verifiers(data: Any, cache: Path) -> Any:
    return train_verifiers(data, cache_dir=cache / f"verifiers-{data.name}", progress=False)


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("validity", "confidence", "verifier_accuracy", "frechet", "nn_ssim", "diversity", "real_diversity")
    out = {k: metrics.get(k) for k in keys}
    out["per_class"] = [{k: v for k, v in row.items() if k in ("label", "validity", "verifier_accuracy", "diversity")}
                        for row in metrics.get("per_class", [])]
    return out


def _wanted(args: argparse.Namespace, name: str) -> bool:
    return not args.only or name in args.only.split(",")


def _grids(args: argparse.Namespace) -> Path:
    return args.results / "inversion"


#: Keys of a row's settings that are fields of InversionRunConfig as they are.
_CONFIG_KEYS = ("losses", "dropout", "latent_dim", "width", "top_width", "lr", "batch_size", "pairs", "lr_schedule", "augment",
                "ema", "generator", "image_prior")


def _config(target: Path, data: Any, args: argparse.Namespace, settings: dict[str, Any], seed: int, seconds: float | None,
            steps: int | None) -> InversionRunConfig:
    """The run_inversion config of one row: ``settings`` are full Inverter settings (a preset merged with its changes)."""
    settings = dict(settings)
    unknown = set(settings) - {*_CONFIG_KEYS, "conditioning"}
    if unknown:
        raise ValueError(f"bench settings {sorted(unknown)} are not InversionRunConfig fields")
    cond, temperature = settings.pop("conditioning", "vector"), None
    if isinstance(cond, (tuple, list)):
        cond, params = cond
        temperature = params.get("temperature")
    opts = {k: v for k, v in settings.items() if v is not None}
    if isinstance(opts.get("losses"), list):
        opts["losses"] = tuple(opts["losses"])
    return InversionRunConfig(classifier=target, dataset=data.name, conditioning=cond, temperature=temperature, **opts,
                              seconds=None if steps else seconds, steps=steps, n_per_class=N_PER_CLASS,
                              verifiers=args.cache / f"verifiers-{data.name}", seed=seed, device=args.device, threads=1)


def run_row(args: argparse.Namespace, name: str, tier: str, family: str, target: Path, data: Any, seconds: float | None,
            settings: dict[str, Any], seed: int = 0, grid: bool = True, keep: bool = False,
            steps: int | None = None) -> dict[str, Any]:
    """One :func:`run_inversion` for ``seconds`` (or ``steps``) into ``CACHE/runs/<name>``; returns the row.

    With ``keep`` the row holds the fitted inverter (reloaded from the run folder) under ``_inverter``.
    """
    config = _config(target, data, args, settings, seed, seconds, steps)
    log.info("[%s] %s: fitting for %s", tier, name, f"{steps} steps" if steps else f"{seconds:.0f} s")
    out = args.cache / ("runs-quick" if args.quick else "runs") / name
    t0 = time.perf_counter()
    result = run_inversion(config, out, force=True, progress=False)
    eval_s = time.perf_counter() - t0 - result.fit_seconds
    metrics = json.loads((out / "metrics.json").read_text())
    grid_path = None
    if grid:
        grid_path = _grids(args) / f"{name}.png"
        grid_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "samples.png", grid_path)
    spec = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
    spec = {k: (repr(v) if not isinstance(v, (str, int, float, list, dict, type(None))) else v) for k, v in spec.items()}
    row = {"name": name, "tier": tier, "family": family, "settings": spec, "steps": result.steps,
           "fit_seconds": round(result.fit_seconds, 1), "eval_seconds": round(eval_s, 1),
           "grid": str(grid_path.relative_to(args.results)) if grid_path else None,
           "target_run": str(target), "target_sha256": weights_sha256(target),
           "run_dir": str(out), "generator_sha256": read_card(out)["weights_sha256"], **_summary(metrics)}
    log.info("[%s] %s: %d steps, validity %.3f, robust %.3f, frechet %.1f", tier, name, row["steps"], row["validity"],
             row["verifier_accuracy"]["robust"], row["frechet"]["generated"])
    if keep:
        clf, _ = load_classifier_run(target)
        row["_inverter"] = Inverter.load(out, clf.eval())
    return row


# ---------------------------------------------------------------------------------------------- classifiers
def _fashion_target(args: argparse.Namespace, data: Any, robust: bool) -> tuple[Any, Path, dict[str, Any]]:
    """The plain or adversarially trained Fashion-MNIST target: ``--fashion-run``/``--robust-run``, else bench/_targets's."""
    run = args.robust_run if robust else args.fashion_run
    run = Path(run) if run is not None else ensure_target("fashion-cnn-robust" if robust else "fashion-cnn")
    model, card = load_classifier_run(run)
    return model.eval(), run, card


# ---------------------------------------------------------------------------------------------- tiers
def tier_a(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Digits, 60 s: the package defaults, and the recipe's parts one at a time (to choose the defaults)."""
    data = load_dataset("digits")
    run = Path(args.digits_run) if args.digits_run is not None else ensure_target("digits-cnn")
    recipe = ("image_stats:1", "mode_seeking:0.05")
    variants = {"digits_default": {}, "digits_no_pixel_cosine": {"losses": tuple(s for s in DEFAULT_LOSSES if "space=pixels" not in s)},
                "digits_ema": {"ema": 0.99}, "digits_shift1": {"augment": make_augmentation("shift", shift=1)},
                "digits_priors": {"losses": (*DEFAULT_LOSSES, *recipe)},
                "digits_recipe": {"losses": (*DEFAULT_LOSSES, *recipe), "ema": 0.99, "augment": make_augmentation("shift", shift=1)}}
    rows = []
    for name, extra in variants.items():
        if name != "digits_default" and args.quick:
            continue
        rows.append(run_row(args, name, "a", "digits", run, data, args.digits_seconds, extra, grid=name == "digits_default",
                            steps=args.quick_steps if args.quick else None))
    return rows


def tier_b(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fashion-MNIST plain target: the fashion preset, then the seed losses, equal budgets."""
    data = load_dataset("fashion-mnist")
    _, run, _ = _fashion_target(args, data, robust=False)
    configs = {"fashion_best": preset("fashion"), "fashion_seed": SEED_SETTINGS}
    return [run_row(args, name, "b", "fashion-baseline" if name == "fashion_seed" else "fashion", run, data, args.fashion_seconds,
                    settings) for name, settings in configs.items() if _wanted(args, name)]


def tier_c(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The fashion-robust preset against an adversarially trained target."""
    data = load_dataset("fashion-mnist")
    _, run, card = _fashion_target(args, data, robust=True)
    row = run_row(args, "fashion_robust_target", "c", "fashion", run, data, args.fashion_seconds, preset("fashion-robust"))
    row["target_card"] = {k: card.get(k) for k in ("source", "training", "test_acc", "pgd10_acc_2k")}
    return [row]


#: Ablation rows: changes to the fashion preset.
def _ablations() -> dict[str, dict[str, Any]]:
    base = preset("fashion")
    losses = list(base["losses"])

    def without(term: str) -> dict[str, Any]:
        return {"losses": tuple(s for s in losses if not s.startswith(term + ":"))}

    return {
        "abl_base": {},
        "abl_cond_label": {"conditioning": "label"},
        "abl_cond_matrix": {"conditioning": "matrix"},
        "abl_cond_vector+matrix": {"conditioning": "vector+matrix"},
        "abl_cond_vector_T1": {"conditioning": ("vector", {"temperature": 1.0})},
        "abl_no_dropout": {"dropout": 0.0},
        "abl_plus_cosine": {"losses": (*losses, "cosine:1")},
        "abl_plus_ortho": {"losses": (*losses, "ortho:1")},
        "abl_no_bn": without("bn"),
        "abl_no_tv": without("tv"),
        "abl_no_image_stats": without("image_stats"),
        "abl_no_mode_seeking": without("mode_seeking"),
        "abl_no_augment": {"augment": "none"},
        "abl_affine_augment": {"augment": "affine"},
        "abl_no_ema": {"ema": None},
        "abl_no_pixel_cosine": without("cosine"),
        "abl_pixel_cosine_no_margin": {"losses": (*without("cosine")["losses"], "cosine:3:centred=true,space=pixels")},
        "abl_base_seed1": {"seed": 1},  # the base with another seed: how large one seed's noise is
    }


def tier_d(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Ablation on the plain Fashion-MNIST target at an equal number of steps (a wall-clock budget
    on a shared machine gave rows from 58 to 350 steps, which swamped the differences)."""
    data = load_dataset("fashion-mnist")
    _, run, _ = _fashion_target(args, data, robust=False)
    rows = []
    for name, change in _ablations().items():
        if _wanted(args, name):
            change = dict(change)
            seed = change.pop("seed", 0)
            rows.append(run_row(args, name, "d", "fashion-ablation", run, data, None, {**preset("fashion"), **change},
                                seed=seed, grid=False, steps=args.ablation_steps))
    return rows


def _pixel_optimisation(clf: Any, ver: Any, n_classes: int, batch: int, max_steps: int, eval_every: int,
                        goal: tuple[float, float], seed: int = 0) -> dict[str, Any]:
    """DeepInversion-style per-sample optimisation of input pixels with CE and the preset's priors.

    Pixels are ``sigmoid(w)`` (always in range), Adam lr 0.1 on ``w``; the classifier scores a
    shifted/flipped copy as in the generator's fit. Every ``eval_every`` steps validity and
    robust-verifier accuracy of the batch are measured (outside the timed part); the first step
    where both reach ``goal`` is the equal-quality point.
    """
    spec = [s for s in preset("fashion")["losses"] if not s.startswith("mode_seeking")]  # no latent: no pairs
    objective = make_objective(spec)
    aug = make_augmentation(preset("fashion")["augment"])
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(batch) % n_classes
    cond = make_conditioning("label", n_classes)(labels, gen)
    w = torch.randn((batch, *clf.input_shape), generator=gen).mul_(0.5).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.1)
    timed, trace, reached = 0.0, [], None
    for step in range(1, max_steps + 1):
        t0 = time.perf_counter()
        x = torch.sigmoid(w)
        with capture_bn_stats(clf) as stats:
            logits, feats = clf.forward_with_features(aug(x, gen))
        loss, _ = objective.evaluate(LossContext(x=x, logits=logits, features=feats, cond=cond, classifier=clf, bn_stats=stats,
                                                 generator=gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        timed += time.perf_counter() - t0
        if step % eval_every == 0 or step == max_steps:
            with torch.no_grad():
                x = torch.sigmoid(w)
                validity = validity_report(clf, x, labels)["validity"]
                robust = validity_report(ver.robust, x, labels)["validity"]
            trace.append({"step": step, "seconds": round(timed, 2), "validity": validity, "robust": robust})
            if reached is None and validity >= goal[0] and robust >= goal[1]:
                reached = trace[-1]
                break
    return {"batch": batch, "trace": trace, "reached": reached, "images": torch.sigmoid(w).detach(), "labels": labels}


def tier_e(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Amortisation: a generator (fashion preset) vs per-sample pixel optimisation at equal quality, one process."""
    data = load_dataset("fashion-mnist")
    clf, run, _ = _fashion_target(args, data, robust=False)
    clf.requires_grad_(False)
    ver = _verifiers(data, args.cache)
    row = run_row(args, "amortised_generator", "e", "fashion", run, data, args.amortise_seconds, preset("fashion"), keep=True)
    inv = row.pop("_inverter")
    # marginal cost of a generator sample: time 1,000 draws
    t0 = time.perf_counter()
    inv.sample_classes(N_PER_CLASS, seed=7)
    gen_per_sample = (time.perf_counter() - t0) / (N_PER_CLASS * int(clf.n_classes))
    goal = (row["validity"], row["verifier_accuracy"]["robust"])
    pix = _pixel_optimisation(clf, ver, int(clf.n_classes), args.pixel_batch, args.pixel_max_steps, 10, goal)
    end = pix["reached"] or pix["trace"][-1]
    pix_per_sample = end["seconds"] / pix["batch"]
    fixed = row["fit_seconds"]
    break_even = fixed / (pix_per_sample - gen_per_sample) if pix_per_sample > gen_per_sample else None
    save_class_grid(pix["images"][: 10 * int(clf.n_classes)], pix["labels"][: 10 * int(clf.n_classes)], _grids(args) / "pixel_optimisation.png",
                    class_names=list(data.class_names),
                    title=f"per-sample pixel optimisation, {end['step']} steps, validity {end['validity']:.2f}")
    metrics = inversion_metrics(pix["images"], pix["labels"], classifier=clf, data=data, verifiers=ver, seed=0)
    pix_row = {"name": "pixel_optimisation", "tier": "e", "family": "fashion", "steps": end["step"], "fit_seconds": end["seconds"],
               "grid": "inversion/pixel_optimisation.png", "settings": {"losses": "ce:1 bn:1 tv:0.3 image_stats:1", "augment": "shift-flip",
                                                                        "batch": pix["batch"], "lr": 0.1},
               **_summary(metrics)}
    amort = {"matched_on": "validity and robust-verifier accuracy, both at least the generator's",
             "goal": {"validity": goal[0], "robust": goal[1]}, "matched": pix["reached"] is not None,
             "generator_fixed_seconds": fixed, "generator_seconds_per_sample": gen_per_sample,
             "pixel_seconds_per_sample": pix_per_sample, "pixel_batch": pix["batch"], "pixel_trace": pix["trace"],
             "break_even_samples": break_even}
    row["amortisation"] = pix_row["amortisation"] = amort
    return [row, pix_row]


def _image_prior(args: argparse.Namespace, data: Any) -> tuple[Any, Path, dict[str, Any]]:
    """The Fashion-MNIST image prior (VAE decoder on the unlabelled training images), trained once into the cache."""
    run = args.cache / "fashion_image_prior"
    if not (run / "card.json").is_file():
        log.info("training the image prior into %s", run)
        run_image_prior(PriorRunConfig(dataset=data.name, code_dim=32, epochs=12, seed=0, device=args.device, threads=1), run,
                        force=True, progress=False)
    return load_image_prior(run), run, read_card(run)["train"]


def _prior_reconstructions(prior: Any, x: torch.Tensor, steps: int = 300) -> torch.Tensor:
    """The closest images the prior can draw to ``x``: codes fitted by gradient descent (the encoder is not kept)."""
    codes = torch.zeros(len(x), prior.code_dim, requires_grad=True)
    opt = torch.optim.Adam([codes], lr=0.05)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(prior.logits(codes), x, reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return prior(codes)


def tier_f(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The learned image prior with the fashion-prior preset, on both targets, beside what the prior can draw at best.

    The reference row scores the prior's reconstructions of 100 real test images per class (with
    their true labels): no inversion can be more varied in pixels or closer to real images than
    what the decoder can express.
    """
    data = load_dataset("fashion-mnist")
    prior, prior_run, prior_info = _image_prior(args, data)
    ver = _verifiers(data, args.cache)
    rows = []
    for name, robust, seed in (("fashion_prior", False, 0), ("fashion_prior_seed1", False, 1), ("fashion_prior_robust_target", True, 0)):
        if not _wanted(args, name):
            continue
        _, run, _ = _fashion_target(args, data, robust=robust)
        row = run_row(args, name, "f", "fashion", run, data, args.fashion_seconds, {**preset("fashion-prior"), "image_prior": prior_run},
                      seed=seed, grid=seed == 0)
        row["prior"], row["prior_sha256"] = prior_info, weights_sha256(prior_run)
        rows.append(row)
    if _wanted(args, "prior_reconstructions"):
        clf, run, _ = _fashion_target(args, data, robust=False)
        g = torch.Generator().manual_seed(0)
        idx = torch.cat([torch.nonzero(data.y_test == k).flatten()[torch.randperm(int((data.y_test == k).sum()), generator=g)[:N_PER_CLASS]]
                         for k in range(data.n_classes)])
        t0 = time.perf_counter()
        x = _prior_reconstructions(prior, data.x_test[idx])
        metrics = inversion_metrics(x, data.y_test[idx], classifier=clf, data=data, verifiers=ver, seed=0)
        rows.append({"name": "prior_reconstructions", "tier": "f", "family": "reference", "settings": {"image_prior": str(prior_run)},
                     "steps": 300, "fit_seconds": round(time.perf_counter() - t0, 1), "eval_seconds": None, "grid": None,
                     "target_run": str(run), "target_sha256": weights_sha256(run), **_summary(metrics)})
    return rows


TIERS: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {"a": tier_a, "b": tier_b, "c": tier_c, "d": tier_d, "e": tier_e,
                                                                         "f": tier_f}
TIER_TITLES = {"a": "digits, 60 s", "b": "Fashion-MNIST plain target, 300 s", "c": "Fashion-MNIST adversarially trained target, 300 s",
               "d": "ablation on Fashion-MNIST (plain target), 250 generator steps per row (fixed steps, so load does not move the comparison)", "e": "amortisation vs per-sample pixel optimisation",
               "f": "Fashion-MNIST through a learned image prior (VAE decoder on unlabelled training images), 300 s, both targets"}


# ---------------------------------------------------------------------------------------------- reporting
def _fmt(v: Any, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _validity_only(amort: dict[str, Any]) -> None:
    """The weaker match: the first pixel-optimisation step whose validity alone reaches the generator's."""
    hit = next((p for p in amort["pixel_trace"] if p["validity"] >= amort["goal"]["validity"]), None)
    if hit is None:
        amort["validity_only"] = None
        return
    per = hit["seconds"] / amort["pixel_batch"]
    gap = per - amort["generator_seconds_per_sample"]
    amort["validity_only"] = {"step": hit["step"], "robust_then": hit["robust"], "pixel_seconds_per_sample": per,
                              "break_even_samples": amort["generator_fixed_seconds"] / gap if gap > 0 else None}


def _shrink_grids(grids: Path) -> None:
    """Re-save the grids as 8-bit greyscale PNGs (they are grey images on white; RGBA is 4x the bytes in git)."""
    for path in grids.glob("*.png"):
        with Image.open(path) as img:
            if img.mode == "L":
                continue
            grey = img.convert("L")
        grey.save(path, optimize=True)


def merge(tiers_dir: Path, results: Path, quick: bool = False) -> dict[str, Any]:
    """Merge the cached tiers into ``results/inversion.json`` and ``.md``."""
    _shrink_grids(results / "inversion")
    tiers = {}
    for t in TIERS:
        path = tiers_dir / f"{t}.json"
        tiers[t] = json.loads(path.read_text()) if path.is_file() else None
    seed = next((r["frechet"]["generated"] for t in tiers.values() if t for r in t["rows"] if r["name"] == "fashion_seed"), None)
    for t in tiers.values():
        for r in (t or {}).get("rows", []):
            if r.get("validity") is not None:
                r["targets"] = _check_targets("digits" if r["family"] == "digits" else "fashion" if r["family"] == "fashion" else "",
                                              r, seed)
    for t in tiers.values():
        for r in (t or {}).get("rows", []):
            if "amortisation" in r:
                _validity_only(r["amortisation"])
    report = {"tiers": tiers, "seed_frechet": seed, "quick": quick}
    (results / "inversion.json").write_text(json.dumps(report, indent=1, default=str))
    (results / "inversion.md").write_text(markdown(report, results))
    return report


def _machine_line(m: dict[str, Any]) -> str:
    """The machine record of ``bench/_machine.py`` (or the older one of committed tiers) as one sentence."""
    threads = m.get("threads", m.get("torch_threads"))
    load = m.get("load_avg_1_5_15", m.get("load_average"))
    device = f", device {m['device']}" if m.get("device") not in (None, "cpu") else ""
    return f"Machine: {m['cpu']}, {m['cores']} cores, {threads} torch thread(s), load average at the end {load}, torch {m['torch']}{device}"


def markdown(report: dict[str, Any], results: Path) -> str:
    lines = ["# Inversion benchmark", ""]
    if report.get("quick"):
        lines += ["**A `--quick` smoke run** (a few hundred steps, not the committed budgets): not comparable with "
                  "`bench/results/inversion.md`.", ""]
    lines += ["Generated by `bench/inversion.py`; every figure from "
             "`netinvert.metrics.inversion_metrics` on 100 samples per class. Diversity is the mean within-class cosine "
             "(centred on the real mean), lower = more varied, shown as generated / real. Budgets are wall-clock seconds of "
             "generator training at one torch thread.", ""]
    head = ("| row | steps | fit s | validity | conf | verifier plain / robust | Frechet gen (real-real) | nn SSIM | "
            "diversity clf gen/real | verifier gen/real | pixel gen/real | targets |")
    for key, title in TIER_TITLES.items():
        tier = report["tiers"].get(key)
        if report.get("quick"):
            title = "quick smoke rows (steps, not the tier's budget)"
        lines += [f"## Tier {key}: {title}", ""]
        if not tier:
            lines += ["Not run (see Notes).", ""]
            continue
        m = tier["machine"]
        lines += [f"{_machine_line(m)}; run {tier['started']} - {tier['finished']} UTC.", "", head,
                  "|" + "---|" * 12]
        for r in tier["rows"]:
            d, rd = r.get("diversity") or {}, r.get("real_diversity") or {}
            targets = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in (r.get("targets") or {}).items()) or "-"
            name = f"[{r['name']}]({r['grid']})" if r.get("grid") else r["name"]
            lines.append(f"| {name} | {r['steps']} | {_fmt(r['fit_seconds'], 0)} | {_fmt(r['validity'])} | {_fmt(r['confidence'])} | "
                         f"{_fmt(r['verifier_accuracy']['plain'])} / {_fmt(r['verifier_accuracy']['robust'])} | "
                         f"{_fmt(r['frechet']['generated'], 1)} ({_fmt(r['frechet']['real_vs_real'], 1)}) | {_fmt(r['nn_ssim'])} | "
                         f"{_fmt(d.get('classifier'))}/{_fmt(rd.get('classifier'))} | {_fmt(d.get('verifier'))}/{_fmt(rd.get('verifier'))} | "
                         f"{_fmt(d.get('pixel'))}/{_fmt(rd.get('pixel'))} | {targets} |")
        earlier: dict[tuple[str, str, str], list[str]] = {}
        for r in tier["rows"]:
            run = r.get("run")
            if run and (run["started"], run["finished"]) != (tier["started"], tier["finished"]):
                m = run["machine"]
                key = (run["started"], run["finished"], str(m.get("load_avg_1_5_15", m.get("load_average"))))
                earlier.setdefault(key, []).append(f"`{r['name']}`")
        for (started, finished, load), names in earlier.items():
            lines.append(f"\n{', '.join(names)} ran {started} - {finished} UTC (load average at the end {load}).")
        amort = next((r["amortisation"] for r in tier["rows"] if "amortisation" in r), None)
        if amort:
            be = amort["break_even_samples"]
            lines += ["", f"Equal quality = {amort['matched_on']} (goal validity {amort['goal']['validity']:.3f}, robust "
                      f"{amort['goal']['robust']:.3f}; reached by pixel optimisation: {amort['matched']}). Generator: "
                      f"{amort['generator_fixed_seconds']:.0f} s once, then {amort['generator_seconds_per_sample'] * 1000:.2f} ms per "
                      f"sample; pixel optimisation: {amort['pixel_seconds_per_sample'] * 1000:.0f} ms per sample (batches of "
                      f"{amort['pixel_batch']}). Break-even: {'-' if be is None else f'{be:.0f}'} samples"
                      + (" (a lower bound on the pixel cost: it never reached the goal within its step budget, so the true "
                         "break-even is at most this)." if not amort["matched"] else ".")]
            vo = amort.get("validity_only")
            if vo:
                vbe = vo["break_even_samples"]
                lines += ["", f"Matched on validity alone, pixel optimisation gets there at step {vo['step']} "
                          f"({vo['pixel_seconds_per_sample'] * 1000:.0f} ms per sample, robust-verifier accuracy then "
                          f"{vo['robust_then']:.2f}); break-even {'-' if vbe is None else f'{vbe:.0f}'} samples."]
        lines.append("")
    notes = results / "inversion" / "notes.md"
    lines += ["## Notes", "", notes.read_text() if notes.is_file() else "(to be written after looking at the grids)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiers", default=None, help="comma-separated subset of a,b,c,d,e,f (default: all; with --quick: a)")
    p.add_argument("--digits-run", type=Path, default=None, help="digits classifier run folder (default: bench/_targets 'digits-cnn')")
    p.add_argument("--fashion-run", type=Path, default=None,
                   help="plain Fashion-MNIST classifier run folder (default: bench/_targets 'fashion-cnn')")
    p.add_argument("--robust-run", type=Path, default=None,
                   help="adversarially trained Fashion-MNIST classifier run folder (default: bench/_targets 'fashion-cnn-robust')")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache", help="verifiers, run folders and tier rows (ignored by git)")
    p.add_argument("--results", type=Path, default=ROOT / "results",
                   help="where inversion.json/.md and the grids go (default bench/results; a --quick run wants another)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="where generators train (default cpu)")
    p.add_argument("--digits-seconds", type=float, default=60.0)
    p.add_argument("--fashion-seconds", type=float, default=300.0)
    p.add_argument("--ablation-steps", type=int, default=250)
    p.add_argument("--amortise-seconds", type=float, default=120.0)
    p.add_argument("--pixel-batch", type=int, default=100)
    p.add_argument("--pixel-max-steps", type=int, default=600)
    p.add_argument("--quick", action="store_true",
                   help="smoke check in a few minutes: tier a's default row for --quick-steps steps, its tier rows kept apart "
                        "(CACHE/tiers-quick); pass --results DIR so the committed results are not overwritten")
    p.add_argument("--quick-steps", type=int, default=300)
    p.add_argument("--only", default=None, help="tiers b, d and f: run only these comma-separated rows; the tier's other "
                                                "cached rows are kept")
    p.add_argument("--merge-only", action="store_true", help="only rebuild inversion.json/.md from the cached tiers")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    if args.quick and args.results.resolve() == (ROOT / "results").resolve():
        p.error("--quick would overwrite the committed bench/results; pass --results DIR")
    tiers = args.tiers or ("a" if args.quick else "a,b,c,d,e,f")
    (args.results / "inversion").mkdir(parents=True, exist_ok=True)
    tiers_dir = args.cache / ("tiers-quick" if args.quick else "tiers")
    tiers_dir.mkdir(parents=True, exist_ok=True)
    if not args.merge_only:
        for t in filter(None, tiers.split(",")):
            if t not in TIERS:
                p.error(f"unknown tier {t!r}; choose from {sorted(TIERS)}")
            started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
            rows = TIERS[t](args)
            stamp = {"machine": machine_record(args.device), "started": started,
                     "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
            for r in rows:
                r["run"] = stamp
            path = tiers_dir / f"{t}.json"
            if args.only and path.is_file():  # keep the rows of an earlier run of this tier that were not rerun
                new, old = {r["name"] for r in rows}, json.loads(path.read_text())
                kept = [r for r in old["rows"] if r["name"] not in new]
                for r in kept:
                    r.setdefault("run", {k: old[k] for k in ("machine", "started", "finished")})
                rows = kept + rows
            out = {"rows": rows, **stamp}
            path.write_text(json.dumps(out, indent=1, default=str))
    merge(tiers_dir, args.results, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
