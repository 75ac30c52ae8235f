"""Benchmark: the amortised attack generator against PGD and torchattacks' PGD (issue 12, adversarial half).

Run from the repository root::

    python bench/adversarial.py                           # plain and PGD-trained Fashion-MNIST CNNs (~25 min, one core)
    python bench/adversarial.py --quick --results /tmp/q  # the digits CNN, short budgets (about two minutes)
    python bench/adversarial.py --only fashion-cnn-pgd    # rerun one target; the other rows stay as they were
    python bench/adversarial.py --validate NAME ...       # score generator recipes on a validation split (see validate())
    python bench/adversarial.py --curve NAME STEPS        # one recipe's validation curve, to choose its steps

For each target of ``bench/_targets.py`` (trained by the committed pipeline when missing), a generator is
trained with :func:`netinvert.apps.adversarial.run_adversarial_training` (``netinvert adversarial train``)
at L-inf eps 0.1 into ``bench/.cache/adversarial/NAME/generator`` and measured with
:func:`netinvert.apps.adversarial.run_attack` (``netinvert adversarial attack``) on the first ``N`` test
images: the generator (one forward pass per example), random perturbations of the same budget, our PGD and
torchattacks' PGD at 10, 20 and 40 steps (same eps, step ``2.5 eps / steps``, random start, same batch size,
same process and thread count), targeted generator and targeted PGD-20, transfer to the independent verifiers,
and counterfeits. Writes ``RESULTS/adversarial.json`` and ``.md`` (seeds, the sha256 of every set of weights,
one machine record, the targets met or missed) and copies the example grids to ``RESULTS/adversarial/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from _machine import commit_record, machine_record
from _targets import ensure_target

from netinvert.apps.adversarial import AdversarialRunConfig, AttackConfig, run_adversarial_training, run_attack
from netinvert.runs import weights_sha256

log = logging.getLogger("bench.adversarial")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CACHE = ROOT / ".cache" / "adversarial"

#: Generator recipes: AdversarialRunConfig fields beyond the defaults, and the attack's ``draw`` (AttackConfig; default
#: ``random``), chosen on the validation split of validate().
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "boundary": {"loss": "boundary"},
    "diversity-0.02": {"diversity": 0.02},
    "no-noise": {"diversity": 0.0, "dropout": 0.0},
    "diversity-0.02-lr-3e-3": {"diversity": 0.02, "lr": 3e-3},
    "corner": {"output": "corner"},
    "mlp-512": {"hidden": (512, 512)},
    # The validation split's best single pass among the mixed (untargeted and targeted) recipes: mlp-512's mean draw.
    "mlp-512-mean": {"hidden": (512, 512), "draw": "mean"},
    # One kind of goal only (the whole batch untargeted), and the true label shown to the generator (as PGD reads it).
    "untargeted-512": {"hidden": (512, 512), "targeted_fraction": 0.0},
    "untargeted-512-no-noise": {"hidden": (512, 512), "targeted_fraction": 0.0, "diversity": 0.0, "dropout": 0.0},
    "untargeted-1024": {"hidden": (1024, 1024), "targeted_fraction": 0.0},
    "untargeted-512x3": {"hidden": (512, 512, 512), "targeted_fraction": 0.0},
    "label-512": {"hidden": (512, 512), "true_label": True},
    "untargeted-label-512": {"hidden": (512, 512), "targeted_fraction": 0.0, "true_label": True},
    "untargeted-label-512-no-noise": {"hidden": (512, 512), "targeted_fraction": 0.0, "true_label": True,
                                      "diversity": 0.0, "dropout": 0.0},
    "untargeted-label-1024": {"hidden": (1024, 1024), "targeted_fraction": 0.0, "true_label": True},
    "untargeted-label-512x3": {"hidden": (512, 512, 512), "targeted_fraction": 0.0, "true_label": True},
    "untargeted-label-512-kappa-0.5": {"hidden": (512, 512), "targeted_fraction": 0.0, "true_label": True, "kappa": 0.5},
    # The validation split's best (untargeted-label-512, mean draw), at the steps its validation curve chose.
    "untargeted-label-512-mean": {"hidden": (512, 512), "targeted_fraction": 0.0, "true_label": True, "draw": "mean"},
}
#: (target, generator recipe, training steps, test images attacked, counterfeit inversion steps) per mode.
SETTINGS = {
    "full": [("fashion-cnn", "default", 6000, 1000, 300),
             ("fashion-cnn-pgd", "untargeted-label-512-mean", 6000, 1000, 300)],
    "quick": [("digits-cnn", "default", 400, 360, 50)],
}
#: The validation split of validate(): this many of the target's recorded non-members (training images the
#: classifier never saw), left out of the generator's training too; the steps of each recipe's short training.
VALIDATION_TARGET, VALIDATION_N, VALIDATION_STEPS = "fashion-cnn-pgd", 1000, 1500
#: Wall-clock cap on each generator's training (whichever of steps and seconds ends first; recorded).
GENERATOR_SECONDS = {"full": 1200.0, "quick": 60.0}
EPS, NORM, SEED = 0.1, "linf", 0
#: The issue's targets: untargeted success >= 90% of PGD-20's, >= 50x fewer ms/example than PGD-20, our PGD
#: within 1 point of torchattacks' at equal settings.
SUCCESS_RATIO, SPEEDUP, AGREEMENT = 0.9, 50.0, 0.01


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT.parent))
    except ValueError:
        return str(path)


def measure(name: str, recipe: str, steps: int, n: int, counterfeit_steps: int, seconds: float, cache: Path,
            results: Path) -> dict[str, Any]:
    """Train the generator for target ``name`` with ``RECIPES[recipe]``, attack its test images, check the targets;
    return the row."""
    clf = ensure_target(name)
    params = dict(RECIPES[recipe])
    draw = params.pop("draw", "random")
    t0 = time.perf_counter()
    trained = run_adversarial_training(
        AdversarialRunConfig(classifier=clf, eps=EPS, norm=NORM, steps=steps, seconds=seconds, seed=SEED, device="cpu",
                             threads=1, **params), cache / name / "generator", force=True, progress=False)
    train_s = time.perf_counter() - t0
    dataset = json.loads((clf / "card.json").read_text())["dataset"]
    attack = run_attack(
        AttackConfig(trained.run_dir, n=n, counterfeit_steps=counterfeit_steps, draw=draw, seed=SEED, device="cpu", threads=1,
                     verifier_cache=cache / f"verifiers-{dataset}"), cache / name / "attack", force=True, progress=False)
    a = attack.attacks
    targets = {
        "untargeted success >= 90% of PGD-20": {
            "value": a["generator"]["success"] / max(a["pgd-20"]["success"], 1e-12), "goal": SUCCESS_RATIO},
        "speed-up over PGD-20 >= 50x": {"value": attack.speedup, "goal": SPEEDUP},
    }
    for key in a:
        if key.startswith("torchattacks-pgd-"):
            steps_k = key.rsplit("-", 1)[1]
            targets[f"gap ours vs torchattacks, {steps_k} steps <= 1 point"] = {
                "value": abs(a[f"pgd-{steps_k}"]["success"] - a[key]["success"]), "goal": AGREEMENT, "below": True}
    for t in targets.values():
        t["met"] = t["value"] <= t["goal"] if t.pop("below", False) else t["value"] >= t["goal"]
    pictures = results / "adversarial"
    pictures.mkdir(parents=True, exist_ok=True)
    for src, dst in ((trained.run_dir / "examples.png", f"{name}_generator.png"),
                     (attack.run_dir / "examples.png", f"{name}_attacks.png"),
                     (attack.run_dir / "counterfeits.png", f"{name}_counterfeits.png")):
        if src.is_file():
            shutil.copyfile(src, pictures / dst)
    log.info("%s: generator %.3f, PGD-20 %.3f, speed-up %.0fx", name, a["generator"]["success"], a["pgd-20"]["success"],
             attack.speedup)
    return {"target": name, "recipe": recipe, "recipe_params": _plain(RECIPES[recipe]), "draw": draw,
            "classifier_run": _shown(clf), "classifier_sha256": weights_sha256(clf),
            "generator_sha256": trained.weights_sha256, "generator_steps": trained.steps,
            "generator_train_seconds": trained.seconds, "train_and_probe_seconds": train_s,
            "generator_train_success": trained.train_success, "attack": attack.to_dict(), "targets": targets}


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _flag(key: str, value: Any) -> str:
    """The CLI flag that sets a recipe's field (a true bool is a bare switch)."""
    name = f"--{key.replace('_', '-')}"
    if value is True:
        return name
    return f"{name} {','.join(map(str, value)) if isinstance(value, list) else value}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def render(result: dict[str, Any]) -> str:
    """The markdown page of a result (``bench/_results.rewrite_notes`` re-renders it after notes are added)."""
    m = result["machine"]
    lines = ["# Adversarial benchmark" + (" (quick: digits)" if result["quick"] else ""), "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['threads']} thread(s), Python "
             f"{m['python']}; load average at the end {m['load_avg_1_5_15']} (other benchmarks shared the CPU: "
             "milliseconds are upper bounds, and every ratio was measured in one process at one thread).",
             f"Budget: {result['norm']} eps={result['eps']}, seed {result['seed']}; torchattacks "
             f"{result['torchattacks'] or 'not installed'}.", ""]
    for row in result["rows"]:
        at = row["attack"]
        recipe = row.get("recipe", "default")
        params = ", ".join(f"{k}={v}" for k, v in row.get("recipe_params", {}).items()) or "the defaults"
        lines += [f"## {row['target']}", ""]
        if "machine" in row:
            rm, rc = row["machine"], row["commit"]
            lines += [f"Measured in its own run: load average at the end {rm['load_avg_1_5_15']}, {rm['threads']} "
                      f"thread(s), commit {rc['sha'][:10]}{' (dirty tree)' if rc['dirty'] else ''}.", ""]
        lines += [f"Classifier `{row['classifier_sha256'][:12]}` (clean accuracy on the {at['n']} test images "
                  f"{_pct(at['clean_accuracy'])}); generator `{row['generator_sha256'][:12]}` (recipe `{recipe}`: "
                  f"{params}), {row['generator_steps']} steps in {row['generator_train_seconds']:.0f} s. Success counts "
                  "the correctly classified images.", "",
                  "| attack | success | mean norm | max norm | ms / example | transfer plain | transfer robust |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in at["attacks"].items():
            ms = "-" if r["ms_per_example"] is None else f"{r['ms_per_example']:.3f}"
            lines.append(f"| {name} | {_pct(r['success'])} | {r['mean_norm']:.3f} | {r['max_norm']:.3f} | {ms} | "
                         f"{_pct(r['transfer_plain'])} | {_pct(r['transfer_robust'])} |")
        extras = at["generator_extras"]
        lines += ["", f"Speed-up of the generator over PGD-20: {at['speedup']:.0f}x ({at['threads']} thread). "
                      f"Any of {extras.get('samples_per_input')} draws succeeds: {_pct(extras.get('success_any_of_k'))}; "
                      f"distance between two draws / perturbation size: {extras.get('distinct', float('nan')):.2f}.", ""]
        for name in ("generator-targeted", "pgd-20-targeted"):
            if name in at["attacks"]:
                per = at["attacks"][name]["per_target"]
                lines.append(f"Per-target success, {name}: " + ", ".join(f"{k}: {_pct(v)}" for k, v in per.items()) + ".")
        cf = at["counterfeits"]
        if cf:
            top = ", ".join(f"{k} ({v})" for k, v in list(cf["pairs"].items())[:5]) or "none"
            lines += ["", f"Counterfeits (no budget; {cf['inversion_steps']} inversion steps, {cf['n']} samples): "
                          f"{_pct(cf['confident'])} are classified as their label with p >= {cf['confidence']}, "
                          f"{_pct(cf['success'])} of all are counterfeits (both verifiers agree on another label). "
                          f"Most frequent: {top}."]
        lines += ["", "| target | value | goal | met |", "|---|---:|---:|---|"]
        for key, t in row["targets"].items():
            lines.append(f"| {key} | {t['value']:.3f} | {t['goal']} | {'yes' if t['met'] else 'no'} |")
        lines += ["", f"Pictures: `adversarial/{row['target']}_*.png`.", ""]
    lines += ["Reproduce: `python bench/adversarial.py` (this file and adversarial.json; `--only NAME` reruns one "
              "target). Each generator is `netinvert adversarial train --classifier bench/.cache/targets/NAME --eps 0.1 "
              "--norm linf --steps S --threads 1 --out DIR` plus its recipe's flags, measured by `netinvert adversarial "
              "attack DIR -n N --threads 1` (plus `--draw` where the recipe sets it):", ""]
    for row in result["rows"]:
        params = dict(row.get("recipe_params", {}))
        draw = params.pop("draw", None)
        flags = " ".join(_flag(k, v) for k, v in params.items() if v is not False)
        lines.append(f"- {row['target']}: train `{flags or '(defaults)'}`, attack `{f'--draw {draw}' if draw else '(defaults)'}`")
    lines.append("")
    if result.get("holdout"):
        lines += ["## Held-out check", "", "The generators' training steps were set after a run on the first test images; "
                  "the next ones, never scored before, give an estimate free of that choice (`--holdout`).", "",
                  "| target | test images | clean accuracy | generator | PGD-20 | ratio (goal >= 0.9) |",
                  "|---|---|---:|---:|---:|---:|"]
        for name, h in result["holdout"].items():
            lines.append(f"| {name} | {h['images'][0]}-{h['images'][1] - 1} | {_pct(h['clean_accuracy'])} | "
                         f"{_pct(h['success']['generator'])} | {_pct(h['success']['pgd-20'])} | {h['ratio']:.3f} |")
        lines.append("")
    val = result.get("validation")
    if val:
        lines += ["## Recipe choice on a validation split", "",
                  f"Each recipe trained {val['steps']} steps on {val['target']}'s training images minus the validation "
                  f"split ({val['n']} training images the classifier never saw: its recorded non-members), scored on that "
                  f"split (clean accuracy {_pct(val['clean_accuracy'])}; PGD-20 {_pct(val['pgd20'])}, so the goal "
                  f"0.9 x PGD-20 is {_pct(0.9 * val['pgd20'])}). One random draw (`--draw random`) and the mean "
                  "draw (`--draw mean`: z = 0, dropout off) cost one generator pass; the best of 4 random draws (chosen by the "
                  "classifier's margin; it succeeds where any of the 4 does) is for information: it costs 4 classifier "
                  "passes. Ratios are to PGD-20; ms / example was timed under varying load (compare within one run).", "",
                  "| recipe | params | ms / example | random draw | ratio | mean draw | ratio | best of 4 | targeted |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in val["recipes"].items():
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
            mean = r.get("success_mean_draw")
            ratio = (lambda v: "-" if v is None else f"{v / max(val['pgd20'], 1e-12):.3f}")
            lines.append(f"| {name} | {params} | {r['ms_per_example']:.3f} | {_pct(r['success'])} | {ratio(r['success'])} | "
                         f"{_pct(mean)} | {ratio(mean)} | {_pct(r['best_of_4'])} | {_pct(r['targeted'])} |")
        lines.append("")
        for name, c in val.get("curves", {}).items():
            params = ", ".join(f"{k}={v}" for k, v in c["params"].items())
            lines += [f"Validation curve of `{name}` ({params}): one fit continued every {val['steps']} steps "
                      "(`--curve`), untargeted success on the same split.", "",
                      "| steps | seconds | random draw | ratio | mean draw | ratio |", "|---:|---:|---:|---:|---:|---:|"]
            for pt in c["points"]:
                seconds = "-" if pt.get("seconds") is None else f"{pt['seconds']:.0f}"
                lines.append(f"| {pt['steps']} | {seconds} | {_pct(pt['random'])} | "
                             f"{pt['random'] / max(val['pgd20'], 1e-12):.3f} | {_pct(pt['mean'])} | "
                             f"{pt['mean'] / max(val['pgd20'], 1e-12):.3f} |")
            lines.append("")
    if result.get("notes"):
        lines += ["## Notes", "", *[f"- {note}" for note in result["notes"]], ""]
    return "\n".join(lines)


@torch.no_grad()
def _labels(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])


def holdout(cache: Path, results: Path, only: list[str] | None = None) -> None:
    """Measure the cached generators and PGD-20 on the next ``n`` test images, never scored while the recipe was chosen.

    The main run attacks the first ``n`` test images, and the generator's training steps were set after a run on
    them; images ``n .. 2n`` give an estimate of the chosen recipe free of that choice. Adds ``holdout`` to the
    result file (for the targets in ``only``, default all; the others' figures are kept) and re-renders it.
    """
    from netinvert.apps.adversarial import PGD, load_generator_run
    from netinvert.data import load_dataset

    path = results / "adversarial.json"
    result = json.loads(path.read_text())
    out = dict(result.get("holdout") or {})
    for row in result["rows"]:
        if only is not None and row["target"] not in only:
            continue
        generator, card = load_generator_run(cache / row["target"] / "generator")
        if card["weights_sha256"] != row["generator_sha256"]:
            raise RuntimeError(f"{row['target']}: the cached generator is not the one measured; rerun the benchmark.")
        clf = generator.classifier.eval()
        n = row["attack"]["n"]
        data = load_dataset(json.loads((ensure_target(row["target"]) / "card.json").read_text())["dataset"])
        x, y = data.x_test[n:2 * n], data.y_test[n:2 * n]
        if len(x) < n:  # the digits test split (360 images) has nothing beyond the attacked ones
            log.warning("holdout %s: the test split has %d images, fewer than the 2 x %d the held-out estimate needs; skipped",
                        row["target"], len(data.x_test), n)
            continue
        ok = _labels(clf, x) == y
        adv_g = generator(x, y, seed=SEED, draw=row.get("draw", "random"))
        adv_p = PGD(clf, eps=EPS, norm=NORM, steps=20)(x, y, generator=torch.Generator().manual_seed(SEED))
        succ = {name: _untargeted_success(clf, adv, y, ok) for name, adv in (("generator", adv_g), ("pgd-20", adv_p))}
        out[row["target"]] = {"images": [n, 2 * n], "clean_accuracy": float(ok.float().mean()), "success": succ,
                              "ratio": succ["generator"] / max(succ["pgd-20"], 1e-12)}
        log.info("holdout %s: %s", row["target"], out[row["target"]])
    result["holdout"] = out
    path.write_text(json.dumps(result, indent=1) + "\n")
    (results / "adversarial.md").write_text(render(result))


def _generated(gen: Any, x: torch.Tensor, y: torch.Tensor, draw: str = "random") -> torch.Tensor:
    """One adversarial example per validation image, in batches of 250 (the attack's batch size)."""
    return torch.cat([gen(x[i:i + 250], y[i:i + 250], seed=SEED, draw=draw) for i in range(0, len(x), 250)])


def _untargeted_success(clf: torch.nn.Module, adv: torch.Tensor, y: torch.Tensor, ok: torch.Tensor) -> float:
    """Share of the correctly classified images (``ok``) whose adversarial example leaves the true label."""
    return float(((_labels(clf, adv) != y) & ok).sum() / ok.sum().clamp_min(1))


def _validation_split() -> tuple[Any, Any, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(classifier, data, train mask, x, y, ok)``: the validation images of validate() and the training images left."""
    from netinvert.data import load_dataset
    from netinvert.models import load_classifier_run, load_members

    run = ensure_target(VALIDATION_TARGET)
    clf, card = load_classifier_run(run, "cpu")
    clf.eval()
    data = load_dataset(card["dataset"])
    val = load_members(run)[1][:VALIDATION_N]
    train = torch.ones(len(data.x_train), dtype=torch.bool)
    train[val] = False
    x, y = data.x_train[val], data.y_train[val]
    return clf, data, train, x, y, _labels(clf, x) == y


def validation_curve(name: str, total: int, cache: Path, results: Path) -> None:
    """Untargeted success of recipe ``name`` on the validation split every ``VALIDATION_STEPS`` steps up to ``total``.

    One fit continued through its checkpoint (the same weights as uninterrupted fits of each length), scored after
    each stretch with a random and the mean draw: where the curve flattens sets the steps of the committed run,
    chosen without a test image. Adds ``validation.curves[name]`` to the result file and re-renders it.
    """
    from netinvert.apps.adversarial import AdversarialGenerator

    clf, data, train, x, y, ok = _validation_split()
    params = dict(RECIPES[name])
    params.pop("draw", None)
    path = results / "adversarial.json"
    result = json.loads(path.read_text())
    state = result["validation"]  # validate() wrote the split's PGD-20 figure
    ckpt = cache / "validation" / f"{name}.curve.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.unlink(missing_ok=True)
    curve = []
    for steps in range(VALIDATION_STEPS, total + 1, VALIDATION_STEPS):
        gen = AdversarialGenerator(clf, eps=EPS, norm=NORM, seed=SEED, **params)
        gen.fit(data.x_train[train], data.y_train[train], steps=steps, progress=False, checkpoint=ckpt,
                checkpoint_seconds=None, resume_from=ckpt if curve else None)
        point = {"steps": steps, "seconds": gen.history_["seconds"][-1]}
        with torch.no_grad():
            for draw in ("random", "mean"):
                point[draw] = _untargeted_success(clf, _generated(gen, x, y, draw), y, ok)
        curve.append(point)
        log.info("validation curve %s: %s", name, point)
        state.setdefault("curves", {})[name] = {"params": _plain(params), "points": curve}
        path.write_text(json.dumps(result, indent=1) + "\n")
        (results / "adversarial.md").write_text(render(result))


def validate(names: list[str], cache: Path, results: Path) -> None:
    """Score generator recipes on a validation split of the training images, never on test images.

    The split is ``VALIDATION_N`` of ``VALIDATION_TARGET``'s recorded non-members: training images its classifier
    never saw (it trained on a subset), so they behave like test images. Each recipe of ``RECIPES`` named in
    ``names`` trains ``VALIDATION_STEPS`` steps on the other training images and attacks the split: one draw per
    image (the committed attack), the best of 4 draws by the classifier's margin, any of 4, and targeted towards one
    seeded other label. PGD-20 on the same split is the reference. Adds the figures to ``validation`` in the result
    file (recipes scored before are kept) and re-renders it.
    """
    from netinvert.apps.adversarial import PGD, AdversarialGenerator, margin_loss

    clf, data, train, x, y, ok = _validation_split()

    def success(adv: torch.Tensor, target: torch.Tensor | None = None) -> float:
        if target is None:
            return _untargeted_success(clf, adv, y, ok)
        return float(((_labels(clf, adv) == target) & ok).sum() / ok.sum().clamp_min(1))

    path = results / "adversarial.json"
    result = json.loads(path.read_text())
    state = result.get("validation") or {}
    if not state:
        adv = PGD(clf, eps=EPS, norm=NORM, steps=20)(x, y, generator=torch.Generator().manual_seed(SEED))
        state = {"target": VALIDATION_TARGET, "n": VALIDATION_N, "steps": VALIDATION_STEPS, "seed": SEED,
                 "clean_accuracy": float(ok.float().mean()), "pgd20": success(adv), "recipes": {}}
    for name in names:
        params = dict(RECIPES[name])
        params.pop("draw", None)  # both draws are scored
        gen = AdversarialGenerator(clf, eps=EPS, norm=NORM, seed=SEED, **params)
        t0 = time.perf_counter()
        gen.fit(data.x_train[train], data.y_train[train], steps=VALIDATION_STEPS, progress=False)
        train_s = time.perf_counter() - t0
        (cache / "validation").mkdir(parents=True, exist_ok=True)
        torch.save(gen.generator_.state_dict(), cache / "validation" / f"{name}.pt")  # for a later look; not read back
        with torch.no_grad():
            t0 = time.perf_counter()
            one = _generated(gen, x, y)
            ms = 1000 * (time.perf_counter() - t0) / len(x)
            mean = _generated(gen, x, y, "mean")
            draws = torch.cat([gen.samples(x[i:i + 250], y[i:i + 250], 4, seed=SEED) for i in range(0, len(x), 250)], 1)
            margins = torch.stack([margin_loss(clf(d), y, targeted=False) for d in draws])
            target = (y + torch.randint(1, 10, (len(y),), generator=torch.Generator().manual_seed(SEED))) % 10
            targeted = success(gen(x, y, target=target, seed=SEED), target) if gen.targeted_fraction > 0 else None
        state["recipes"][name] = {
            "params": _plain(params), "train_seconds": train_s, "ms_per_example": ms, "success": success(one),
            "success_mean_draw": success(mean),
            "best_of_4": success(draws[margins.argmin(0), torch.arange(len(x))]),
            "any_of_4": float(((margins < 0).any(0) & ok).sum() / ok.sum().clamp_min(1)), "targeted": targeted,
            "train_success_last_50": sum(gen.history_["success"][-50:]) / 50}
        log.info("validation %s: %s", name, state["recipes"][name])
        result["validation"] = state
        path.write_text(json.dumps(result, indent=1) + "\n")
        (results / "adversarial.md").write_text(render(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the digits CNN with short budgets: a smoke check")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder for adversarial.json and .md (default: bench/results, the committed figures)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the runs go (default: bench/.cache/adversarial)")
    parser.add_argument("--holdout", action="store_true",
                        help="only measure the cached generators on the next test images (see holdout())")
    parser.add_argument("--only", nargs="+", default=None, metavar="TARGET",
                        help="rerun only these targets; the other rows of the result file stay as they were")
    parser.add_argument("--validate", nargs="+", default=None, metavar="RECIPE", choices=sorted(RECIPES),
                        help="only score these generator recipes on the validation split (see validate())")
    parser.add_argument("--curve", nargs=2, default=None, metavar=("RECIPE", "STEPS"),
                        help="only score one recipe's validation curve up to STEPS (see validation_curve())")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    if args.holdout:
        if args.quick:
            parser.error("--holdout needs test images beyond the attacked ones; --quick attacks all 360 digits test images")
        known = [s[0] for s in SETTINGS["full"]]
        if args.only is not None and not set(args.only) <= set(known):
            parser.error(f"--only takes targets of {known}; got {args.only}")
        holdout(args.cache, args.results, args.only)
        return
    if args.validate:
        validate(args.validate, args.cache, args.results)
        return
    if args.curve:
        name, total = args.curve
        if name not in RECIPES:
            parser.error(f"--curve takes a recipe of {sorted(RECIPES)}; got {name!r}")
        if not total.isdigit() or int(total) < VALIDATION_STEPS:
            parser.error(f"--curve takes STEPS, an int >= {VALIDATION_STEPS} (scored every {VALIDATION_STEPS}); got {total!r}")
        result_file = args.results / "adversarial.json"
        if not result_file.is_file() or "validation" not in json.loads(result_file.read_text()):
            parser.error(f"{result_file} has no validation split yet: run --validate with some recipe first")
        validation_curve(name, int(total), args.cache, args.results)
        return
    mode = "quick" if args.quick else "full"
    args.results.mkdir(parents=True, exist_ok=True)
    try:
        import torchattacks
        ta_version = torchattacks.__version__
    except ImportError:
        ta_version = None
    settings = [s for s in SETTINGS[mode] if args.only is None or s[0] in args.only]
    if args.only is not None and len(settings) != len(args.only):
        parser.error(f"--only takes targets of {[s[0] for s in SETTINGS[mode]]}; got {args.only}")
    rows = [measure(name, recipe, steps, n, cf, GENERATOR_SECONDS[mode], args.cache, args.results)
            for name, recipe, steps, n, cf in settings]
    commit, machine = commit_record(), machine_record("cpu")
    path = args.results / "adversarial.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    if args.only is not None:  # keep the other rows, each with the record of the run that measured it
        for row in rows:
            row["commit"], row["machine"] = commit, machine
        kept = [{"commit": old["commit"], "machine": old["machine"], **r} if "machine" not in r else r
                for r in old.get("rows", []) if r["target"] not in args.only]
        order = [s[0] for s in SETTINGS[mode]]
        rows = sorted(kept + rows, key=lambda r: order.index(r["target"]) if r["target"] in order else len(order))
    result = {"quick": args.quick, "eps": EPS, "norm": NORM, "seed": SEED, "torchattacks": ta_version, "rows": rows,
              "commit": commit, "machine": machine}
    for key in ("validation", "notes"):  # measured or written separately; a rerun keeps them
        if key in old and old.get("quick") == args.quick:
            result[key] = old[key]
    if old.get("holdout") and old.get("quick") == args.quick and args.only is not None:
        # a held-out figure belongs to the generator it measured: keep those of the targets not retrained
        kept = {k: v for k, v in old["holdout"].items() if k not in args.only}
        if kept:
            result["holdout"] = kept
    (args.results / "adversarial.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results / "adversarial.md").write_text(render(result))
    log.info("wrote %s", args.results / "adversarial.json")


if __name__ == "__main__":
    main()
