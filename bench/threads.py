"""Benchmark: 1 against 2 torch threads, on an idle machine and beside one busy process.

It times inversion steps (``Inverter(clf, **preset(p)).fit(steps=...)``) and the classifier's own
forward + backward to its input, for the digits CNN (8x8) and a Fashion-MNIST-sized CNN (28x28;
speed does not depend on the weights, so an untrained one serves). Conditions and thread counts
are interleaved and repeated; the median is reported. "load" starts one extra process that spins
on a core for the whole measurement (another user's job on a shared machine). The figures chose
the default of ``netinvert._threads.default_threads``.

Usage::

    python bench/threads.py              # writes bench/results/threads.{json,md}
    python bench/threads.py --quick --results /tmp/r
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _machine import machine_record

from netinvert.inversion import Inverter, preset
from netinvert.models import build_model

log = logging.getLogger("bench.threads")
RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {  # name: (input shape, model params, preset)
    "digits CNN": ((1, 8, 8), {"channels": [16, 32], "hidden": 64}, "default"),
    "Fashion-MNIST CNN": ((1, 28, 28), {"channels": [16, 32], "hidden": 128, "convs_per_block": 1}, "fashion"),
}


def _spin(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        x += 1


def _classifier_rate(clf: torch.nn.Module, shape: tuple[int, ...], batch: int, seconds: float) -> float:
    x = torch.rand(batch, *shape, requires_grad=True)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        clf(x).sum().backward()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def _inversion_rate(clf: torch.nn.Module, preset_name: str, steps: int) -> float:
    settings = preset(preset_name)
    inv = Inverter(clf, seed=0, device="cpu", **settings)
    inv.fit(steps=2, progress=False)  # warm-up: first-call costs are not steps
    inv = Inverter(clf, seed=0, device="cpu", **settings)
    t0 = time.perf_counter()
    inv.fit(steps=steps, progress=False)
    return steps * int(settings.get("batch_size", 64)) / (time.perf_counter() - t0)


def measure(repeats: int, steps: int, clf_seconds: float) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str, int], dict[str, list[float]]] = {}
    models = {}
    for name, (shape, params, _) in TARGETS.items():
        torch.manual_seed(0)
        models[name] = build_model("cnn", input_shape=shape, n_classes=10, **params).eval()
    for rep in range(repeats):
        for condition in ("idle", "load"):
            stop = mp.Event()
            spinner = mp.Process(target=_spin, args=(stop,)) if condition == "load" else None
            if spinner is not None:
                spinner.start()
                time.sleep(0.5)
            try:
                for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):
                    torch.set_num_threads(threads)
                    for name, (shape, _, preset_name) in TARGETS.items():
                        cell = rows.setdefault((name, condition, threads), {"classifier": [], "inversion": []})
                        cell["classifier"].append(_classifier_rate(models[name], shape, 64, clf_seconds))
                        cell["inversion"].append(_inversion_rate(models[name], preset_name, steps))
                        log.info("rep %d %s %s %d threads: clf %.0f/s, inversion %.0f/s", rep, name, condition, threads,
                                 cell["classifier"][-1], cell["inversion"][-1])
            finally:
                if spinner is not None:
                    stop.set()
                    spinner.join()
    out = []
    for (name, condition, threads), cell in rows.items():
        out.append({"target": name, "condition": condition, "threads": threads, "preset": TARGETS[name][2],
                    "classifier_images_per_s": statistics.median(cell["classifier"]),
                    "inversion_images_per_s": statistics.median(cell["inversion"]),
                    "inversion_runs": cell["inversion"]})
    return out


def write_markdown(path: Path, res: dict[str, Any]) -> None:
    m = res["machine"]
    lines = ["# Torch threads: 1 against 2, idle and beside one busy process", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; load averages at the end {m['load_avg_1_5_15']}. "
             f"Median of {res['repeats']} interleaved repeats; images/s at batch 64 "
             f"(inversion: {res['steps']} steps of the named preset; classifier: forward + backward to its input). "
             "'load' = one other process spinning on a core.", "",
             "| target | condition | threads | classifier fwd+bwd (img/s) | inversion (img/s) | inversion 2 threads / 1 |",
             "|---|---|---:|---:|---:|---:|"]
    by = {(r["target"], r["condition"], r["threads"]): r for r in res["rows"]}
    for (target, condition, threads), r in sorted(by.items()):
        ratio = by[(target, condition, 2)]["inversion_images_per_s"] / by[(target, condition, 1)]["inversion_images_per_s"]
        lines.append(f"| {target} | {condition} | {threads} | {r['classifier_images_per_s']:.0f} | "
                     f"{r['inversion_images_per_s']:.0f} | {ratio:.2f} |")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in res.get("notes", [])]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=30, help="inversion steps per measurement")
    p.add_argument("--quick", action="store_true", help="one repeat of 5 steps (a smoke check, not a measurement)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    repeats, steps, clf_s = (1, 5, 0.5) if args.quick else (args.repeats, args.steps, 3.0)
    rows = measure(repeats, steps, clf_s)
    res = {"machine": machine_record(), "repeats": repeats, "steps": steps, "rows": rows}
    res["machine"]["threads"] = "1 and 2 (per row)"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "threads.json").write_text(json.dumps(res, indent=1) + "\n")
    write_markdown(args.results / "threads.md", res)
    log.info("wrote %s", args.results / "threads.md")


if __name__ == "__main__":
    main()
