"""Benchmark: explanations from the generator against Integrated Gradients, with Adebayo's sanity checks (issue 12).

Run from the repository root::

    python bench/explain.py                           # digits and Fashion-MNIST CNNs (about 25 min on one core)
    python bench/explain.py --quick --results /tmp/q  # digits with small budgets (minutes)

For each target classifier (``bench/_targets.py``) an inversion run is made by
:func:`netinvert.inversion.run_inversion` with a fixed number of steps and seed into
``bench/.cache/explain/`` and explained by :func:`netinvert.apps.explain.run_explain` (the code
``netinvert explain`` runs): mean and variance maps over 1,000 samples per class, Integrated
Gradients over 100 test images per class, boundary paths, and the cascading model randomisation and
label randomisation tests, where our maps are re-inverted with the run's own settings and steps.

The target (issue 12): after the output layer is randomised, the mean SSIM between our maps and the
trained model's is below 0.5; the same figure for Integrated Gradients is reported beside it.
Writes ``RESULTS/explain.json`` and ``RESULTS/explain.md`` and copies the figures to ``RESULTS/explain/``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from _machine import commit_record, machine_record
from _results import bench_arguments, machine_line, write_results
from _targets import ensure_target

from netinvert.apps.explain import SSIM_PASS, ExplainConfig, run_explain
from netinvert.inversion import InversionRunConfig, run_inversion
from netinvert.runs import CARD_NAME, read_card, weights_sha256

log = logging.getLogger("bench.explain")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CACHE = ROOT / ".cache" / "explain"

#: name -> (target classifier, inversion steps, explanation settings)
SETTINGS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "digits": ("digits-cnn", 1000, {}),
    "fashion": ("fashion-cnn", 1000, {"shuffle_epochs": 2}),
}
QUICK = {"digits": ("digits-cnn", 200, {"samples_per_class": 200, "attribution_images": 30, "shuffle_epochs": 3})}
FIGURES = ("gallery.png", "mean_maps.png", "variance_maps.png", "attribution_maps.png", "sanity_ours.png",
           "sanity_attribution.png")


def _inverted(name: str, target: str, steps: int, cache: Path) -> Path:
    """The inversion run of ``target`` with ``steps`` steps (seed 0, one thread), made unless already there."""
    classifier = ensure_target(target)
    config = InversionRunConfig(classifier=classifier, steps=steps, seed=0, device="cpu", threads=1)
    run = cache / f"{name}-inversion"
    if (run / CARD_NAME).is_file() and read_card(run).get("config") == json.loads(json.dumps(config.to_dict())):
        return run
    run_inversion(config, run, force=True, progress=False)
    return run


def measure(name: str, target: str, steps: int, settings: dict[str, Any], cache: Path, results: Path) -> dict[str, Any]:
    inversion = _inverted(name, target, steps, cache)
    config = ExplainConfig(run=inversion, seed=0, device="cpu", threads=1, **settings)
    out = cache / f"{name}-explain"
    result = run_explain(config, out, force=True, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    figures = results / "explain" / name
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    for f in (*FIGURES, *(f"boundary_{a}_{b}.png" for a, b in result.pairs[:1])):
        shutil.copy(out / f, figures / f)
    inv_metrics = json.loads((inversion / "metrics.json").read_text())
    return {"name": name, "target": target, "inversion_steps": steps, "config": config.to_dict(),
            "inversion_validity": inv_metrics.get("validity"), "inversion_robust_verifier": (inv_metrics.get("verifier_accuracy") or {}).get("robust"),
            "sanity": metrics["sanity"], "pairs": metrics["pairs"], "boundary_probabilities": metrics["boundary_probabilities"],
            "seconds": result.seconds, "weights_sha256": {"classifier": weights_sha256(ensure_target(target)),
                                                         "generator": weights_sha256(inversion)}}


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def render(result: dict[str, Any]) -> str:
    lines = ["# Explanations from the generator vs Integrated Gradients (bench/explain.py)", "",
             machine_line(result),
             "Our map of a class: the pixel mean of 1,000 inverted samples. IG: Captum's Integrated Gradients (black "
             "baseline, 32 steps), |attribution| averaged over 100 test images per class. Sanity (Adebayo et al. 2018): "
             "mean SSIM over classes between the maps of the trained model and of a model with layers re-initialised from "
             "the output back (our maps re-inverted with the run's settings and steps), and of the same architecture "
             f"trained on shuffled labels. Lower = the map depends on the model; the pass mark is SSIM < {SSIM_PASS} after "
             "the output layer is randomised.", ""]
    if result.get("quick"):
        lines += ["**A `--quick` smoke run**: small budgets, not the committed figures.", ""]
    lines += ["| target | inversion steps | validity / robust verifier | ours: output layer random | ours: all random | "
              "ours: shuffled labels | IG: output layer random | IG: all random | IG: shuffled labels | passes (ours / IG) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        s = r["sanity"]
        first, last = s["cascade"][0], s["cascade"][-1]
        lab = s["label_randomisation"]
        lines.append(f"| {r['target']} | {r['inversion_steps']} | {r['inversion_validity']:.3f} / {r['inversion_robust_verifier']:.3f} | "
                     f"{_mean(first['ours_ssim']):.3f} | {_mean(last['ours_ssim']):.3f} | "
                     f"{_mean(lab['ours_ssim']):.3f} | {_mean(first['attribution_ssim']):.3f} | "
                     f"{_mean(last['attribution_ssim']):.3f} | {_mean(lab['attribution_ssim']):.3f} | "
                     f"{'yes' if s['ours_passes'] else '**no**'} / {'yes' if s['attribution_passes'] else 'no'} |")
    for r in result["runs"]:
        lines += ["", f"### {r['target']}: IG through the whole cascade (mean SSIM to the trained model's maps)", "",
                  "| layers randomised (from) | " + " | ".join(c["randomised_from"] for c in r["sanity"]["cascade"]) + " |",
                  "|---|" + "---|" * len(r["sanity"]["cascade"]),
                  "| IG SSIM | " + " | ".join(f"{_mean(c['attribution_ssim']):.3f}" for c in r["sanity"]["cascade"]) + " |",
                  "", f"Shuffled-label model test accuracy: {r['sanity']['label_randomisation']['test_accuracy']:.3f}; "
                  f"boundary pairs (most alike mean maps): {r['pairs']}."]
    if result.get("notes"):
        lines += ["", "## Notes", "", *[f"- {n}" for n in result["notes"]]]
    lines += ["", "Figures: `bench/results/explain/TARGET/` (sanity_ours.png and sanity_attribution.png show every map with "
              "its SSIM)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = bench_arguments(__doc__, "explain", RESULTS, CACHE)
    settings = QUICK if args.quick else SETTINGS
    rows = [measure(n, *settings[n], args.cache, args.results) for n in settings]
    result: dict[str, Any] = {"quick": args.quick, "runs": rows, "commit": commit_record(), "machine": machine_record("cpu")}
    log.info("wrote %s", write_results(args.results, "explain", result, render))


if __name__ == "__main__":
    main()
