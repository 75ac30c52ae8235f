"""Benchmark: inversion throughput against the frozen classifier's own forward + backward (issue 15, part 1).

An inversion step must at least run the frozen classifier forward and back to its input, so that rate
(L, images/s) is the ceiling an inversion step (G, images/s of ``Inverter(clf, **preset(p)).fit``) is
measured against: G/L per row, target >= 0.5. Both are measured side by side in one process, interleaved
(thread counts alternate between repeats, L just before each target's G), so machine load moves both
alike; the median of the repeats is reported, with the load average at the end. Absolute images/s on a
shared machine say little; the ratios are the figures.

``--variant NAME='{"key": value}'`` adds rows with Inverter settings merged over each preset (measured in
the same rounds, for comparing implementation choices); ``--compile`` is one such variant's flag.

Usage::

    python bench/throughput.py                 # writes bench/results/throughput.{json,md}
    python bench/throughput.py --quick --results /tmp/r
    python bench/throughput.py --variant lean='{"pairs": "batch"}' --results /tmp/r
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _machine import commit_record, machine_record
from _results import machine_line, write_results
from _targets import ensure_target

from netinvert.inversion import Inverter, preset
from netinvert.models import load_classifier_run

log = logging.getLogger("bench.throughput")
RESULTS = Path(__file__).resolve().parent / "results"
#: target name -> (bench/_targets name, inversion steps per measurement)
TARGETS = {"digits CNN": ("digits-cnn", 60), "Fashion-MNIST CNN": ("fashion-cnn", 20)}
PRESETS = ("default", "fashion")
BATCH = 64


def classifier_rate(clf: torch.nn.Module, batch: int, seconds: float, weights: bool = False) -> float:
    """Images/s of the frozen classifier's forward and backward to its input.

    With ``weights`` the weights' gradients are computed too (``bench/threads.py``'s measure, and what the
    issue's first table used): about twice the work, so a lower, easier bar; L proper leaves them out, as
    an inversion step does.
    """
    x = torch.rand(batch, *clf.input_shape, requires_grad=True)
    clf.requires_grad_(weights)
    try:
        clf(x).sum().backward()  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            x.grad = None
            clf.zero_grad(set_to_none=True)
            clf(x).sum().backward()
            n += 1
        return n * batch / (time.perf_counter() - t0)
    finally:
        clf.requires_grad_(False)


def inversion_rate(clf: torch.nn.Module, settings: dict[str, Any], steps: int) -> float:
    """Images/s of a whole ``fit`` of ``steps`` steps (set-up, and any compilation, included), after a warm-up fit."""
    Inverter(clf, seed=0, device="cpu", **settings).fit(steps=2, progress=False)
    inv = Inverter(clf, seed=0, device="cpu", **settings)
    t0 = time.perf_counter()
    inv.fit(steps=steps, progress=False)
    return steps * int(settings.get("batch_size", BATCH)) / (time.perf_counter() - t0)


def measure(targets: dict[str, tuple[str, int]], presets: tuple[str, ...], variants: dict[str, dict[str, Any]],
            threads: tuple[int, ...], repeats: int, clf_seconds: float, step_scale: float) -> list[dict[str, Any]]:
    models = {}
    for name, (target, _) in targets.items():
        clf, _ = load_classifier_run(ensure_target(target))
        models[name] = clf.eval().requires_grad_(False)
    cells: dict[tuple[str, str, str, int], dict[str, list[float]]] = {}
    for rep in range(repeats):
        for n_threads in (threads if rep % 2 == 0 else threads[::-1]):
            torch.set_num_threads(n_threads)
            for name, (_, steps) in targets.items():
                clf = models[name]
                steps = max(2, round(steps * step_scale))
                order = [(p, v) for p in presets for v in variants]
                for p, v in (order if rep % 2 == 0 else order[::-1]):
                    settings = {**preset(p), **variants[v]}
                    cell = cells.setdefault((name, p, v, n_threads), {"L": [], "Lw": [], "G": []})
                    cell["L"].append(classifier_rate(clf, BATCH, clf_seconds))  # just before G: the same load
                    cell["Lw"].append(classifier_rate(clf, BATCH, clf_seconds / 2, weights=True))
                    cell["G"].append(inversion_rate(clf, settings, steps))
                    log.info("rep %d, %d thread(s), %s, %s%s: L %.0f/s, G %.0f/s (%.2f)", rep, n_threads, name, p,
                             f" [{v}]" if v else "", cell["L"][-1], cell["G"][-1], cell["G"][-1] / cell["L"][-1])
    rows = []
    for (name, p, v, n_threads), cell in cells.items():
        ratios = [g / l for g, l in zip(cell["G"], cell["L"])]
        rows.append({"target": name, "preset": p, "variant": v, "settings": variants[v], "threads": n_threads,
                     "classifier_images_per_s": statistics.median(cell["L"]),
                     "classifier_with_weight_grads_images_per_s": statistics.median(cell["Lw"]),
                     "inversion_images_per_s": statistics.median(cell["G"]), "ratio": statistics.median(ratios),
                     "ratio_runs": [round(r, 3) for r in ratios],
                     "ratio_to_weight_grads": statistics.median(g / l for g, l in zip(cell["G"], cell["Lw"])),
                     "L_runs": cell["L"], "Lw_runs": cell["Lw"], "G_runs": cell["G"]})
    return rows


def render(res: dict[str, Any]) -> str:
    lines = ["# Inversion throughput against the classifier's forward + backward", "",
             machine_line(res) + f" Median of {res['repeats']} interleaved repeats, batch {BATCH}; L = the frozen "
             "classifier's forward + backward to its input (images/s), G = a whole `Inverter(clf, **preset(p)).fit` of "
             f"{', '.join(f'{s} steps on the {t}' for t, s in res['steps'].items())} (set-up included, after a "
             "warm-up fit); G/L is the median of the per-repeat ratios (each G beside its own L). Target G/L >= 0.5. "
             "G/Lw: against the classifier's forward + backward with its weights' gradients too (`bench/threads.py`'s "
             "measure, an easier bar, shown for comparison with figures taken that way).", "",
             "| target | preset | variant | threads | L (img/s) | G (img/s) | G/L | G/L per repeat | G/Lw |",
             "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in sorted(res["rows"], key=lambda r: (r["target"], r["preset"], r["variant"], r["threads"])):
        lines.append(f"| {r['target']} | {r['preset']} | {r['variant'] or '-'} | {r['threads']} | "
                     f"{r['classifier_images_per_s']:.0f} | {r['inversion_images_per_s']:.0f} | {r['ratio']:.2f} | "
                     f"{', '.join(f'{x:.2f}' for x in r['ratio_runs'])} | {r['ratio_to_weight_grads']:.2f} |")
    if res.get("variants"):
        lines += ["", "Variants (Inverter settings merged over the preset): "
                  + "; ".join(f"`{k}` = `{json.dumps(v)}`" for k, v in res["variants"].items() if k)]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in res.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: " + ", ".join(TARGETS))
    p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                   help="extra rows: Inverter settings merged over each preset")
    p.add_argument("--step-scale", type=float, default=1.0, help="scale the inversion steps per measurement")
    p.add_argument("--quick", action="store_true", help="one repeat of a fifth of the steps (a smoke check)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    variants: dict[str, dict[str, Any]] = {"": {}}
    for item in args.variant:
        name, _, text = item.partition("=")
        variants[name] = json.loads(text)
    targets = {t: TARGETS[t] for t in args.targets.split(",")}
    repeats, clf_s, scale = (1, 0.5, 0.2) if args.quick else (args.repeats, 2.0, args.step_scale)
    threads = tuple(int(t) for t in args.threads.split(","))
    rows = measure(targets, tuple(args.presets.split(",")), variants, threads, repeats, clf_s, scale)
    res = {"machine": machine_record(), "commit": commit_record(), "repeats": repeats, "batch": BATCH,
           "steps": {t: max(2, round(s * scale)) for t, (_, s) in targets.items()},
           "variants": {k: v for k, v in variants.items() if k}, "rows": rows}
    res["machine"]["threads"] = "/".join(map(str, threads)) + " (per row)"
    path = write_results(args.results, "throughput", res, render)
    log.info("wrote %s", path.with_suffix(".md"))


if __name__ == "__main__":
    main()
