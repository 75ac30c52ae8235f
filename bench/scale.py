"""Benchmark: scale-out on one machine, 1 process against 2.

Classifier training: ``netinvert train`` in one process, and the same command under
``torchrun --nproc_per_node 2`` (DistributedDataParallel, gloo), at equal total steps (the batch
size is the global batch, so equal epochs are equal steps), for a few seeds: training throughput
(training images per second of training time, and the whole command's wall time including the
start of the processes) and test accuracy. Generator inversion: ``netinvert invert`` of the digits
CNN the same way (equal steps of the same global batch): generated samples per second of fitting
time and validity. BNN queries: ``robustness`` over many test images and ``sample`` over every
label, serial against ``--jobs 2``, with a check that the answers are the same (seconds aside).

Usage::

    python bench/scale.py                          # writes bench/results/scale.{json,md}
    python bench/scale.py --only inversion         # measure one part; the others are kept from scale.json
    python bench/scale.py --quick --results /tmp/r # one seed, fewer images: a smoke check

Every figure comes from the commands users run (``netinvert train``, ``run_bnn_query``). On a
machine whose cores other jobs share, two processes cannot run twice as fast; the machine record
holds the cores and the load average, and the ratios are upper bounds of what the code loses
to the sharing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per process, set before torch loads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from _machine import commit_record, machine_record  # noqa: E402
from _results import machine_line, write_results  # noqa: E402

from netinvert.bnn import BNNRunConfig, run_bnn_query, run_bnn_training  # noqa: E402
from netinvert.runs import drop_seconds  # noqa: E402

log = logging.getLogger("bench.scale")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = HERE / ".cache" / "scale"
CLI = [sys.executable, "-c", "import sys; from netinvert.cli import main; sys.exit(main())"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python"]

#: The training measured: the digits CNN, 10 epochs of global batch 64 (230 steps).
TRAIN_ARGS = ["--dataset", "digits", "--model", "cnn", "--model-param", "channels=[16, 32]", "--model-param",
              "hidden=64", "--epochs", "10", "--batch-size", "64", "--lr", "3e-3", "--device", "cpu", "--threads", "1",
              "--no-progress"]
#: The inversion measured: 300 steps of a global batch of 64 against the digits CNN of TRAIN_ARGS (seed 0).
INVERT_ARGS = ["--steps", "300", "--batch-size", "64", "--device", "cpu", "--threads", "1", "--no-progress"]
#: The OOD training measured: two rounds of the garbage-class loop from the digits CNN of TRAIN_ARGS (seed 0).
OOD_ARGS = ["--rounds", "2", "--steps", "150", "--epochs-per-round", "2", "--device", "cpu", "--threads", "1",
            "--no-progress"]
#: The parts of the benchmark, each a section of scale.json.
PARTS = ("training", "inversion", "ood", "bnn")
#: The BNN the queries read: digits 64-32-10 (a few seconds to train).
BNN = BNNRunConfig(dataset="digits", hidden=(32,), epochs=10, seed=0, threads=1)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", NETINVERT_THREADS="1")
    return env


def _command(processes: int, args: list[str], out: Path) -> tuple[dict[str, Any], float]:
    """Run ``netinvert ARGS --out OUT`` (under torchrun for 2 processes): the run's card and the wall seconds."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*(TORCHRUN if processes > 1 else []), *CLI, *args, "--out", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "card.json").read_text()), wall


def _train(processes: int, seed: int, out: Path) -> dict[str, Any]:
    """One ``netinvert train``: its card's figures and the wall time."""
    card, wall = _command(processes, ["train", *TRAIN_ARGS, "--seed", str(seed)], out)
    images = card["n_train"] * card["train_config"]["epochs"]
    return {"processes": processes, "seed": seed, "test_accuracy": card["test_accuracy"],
            "train_seconds": card["train_seconds"], "wall_seconds": wall,
            "images_per_second": images / card["train_seconds"], "distributed": card.get("distributed"),
            "weights_sha256": card["weights_sha256"] if "weights_sha256" in card else None}


def _invert(processes: int, seed: int, classifier: Path, out: Path) -> dict[str, Any]:
    """One ``netinvert invert``: validity, fitting seconds and wall time."""
    card, wall = _command(processes, ["invert", "--classifier", str(classifier), *INVERT_ARGS, "--seed", str(seed)], out)
    steps = len(json.loads((out / "history.json").read_text())["step"])
    samples = steps * int(INVERT_ARGS[INVERT_ARGS.index("--batch-size") + 1])
    return {"processes": processes, "seed": seed, "validity": card["metrics"]["validity"], "steps": steps,
            "fit_seconds": card["fit_seconds"], "samples_per_second": samples / card["fit_seconds"],
            "wall_seconds": wall, "distributed": card.get("distributed")}


def _ood(processes: int, seed: int, classifier: Path, out: Path) -> dict[str, Any]:
    """One ``netinvert ood train``: accuracies, garbage set, loop seconds and wall time."""
    card, wall = _command(processes, ["ood", "train", "--classifier", str(classifier), *OOD_ARGS, "--seed", str(seed)], out)
    return {"processes": processes, "seed": seed, "val_accuracy": card["val_accuracy"],
            "test_accuracy": card["test_accuracy"], "garbage_size": card["garbage_size"], "seconds": card["seconds"],
            "wall_seconds": wall}


def _summary(rows: list[dict[str, Any]], figures: tuple[str, ...], medians: tuple[str, ...]) -> dict[str, Any]:
    """Per process count: every seed's ``figures`` and their mean, the medians of ``medians``."""
    out = {}
    for processes in (1, 2):
        mine = [r for r in rows if r["processes"] == processes]
        out[str(processes)] = {**{f: [r[f] for r in mine] for f in figures},
                               **{f"mean_{f}": statistics.fmean(r[f] for r in mine) for f in figures},
                               **{f"median_{m}": statistics.median(r[m] for r in mine) for m in medians}}
    return out


def _query(name: str, run: Path, params: dict[str, Any], jobs: int) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = run_bnn_query(name, run, params, jobs=jobs).result
    return time.perf_counter() - t0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, fewer images (a smoke check)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                        help="measure these parts; the others are kept from the existing scale.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    load_start = [round(v, 2) for v in os.getloadavg()]
    seeds = [0] if args.quick else [0, 1, 2]

    old = args.results / "scale.json"
    result = json.loads(old.read_text()) if old.is_file() else {}
    result.update({"benchmark": "scale", "quick": args.quick, "seeds": seeds, "load_avg_at_start": load_start,
                   "machine": machine_record(), "commit": commit_record(), "measured": list(args.only)})
    if "training" in args.only:
        rows = []
        for seed in seeds:  # interleaved, so a change of load hits both
            for processes in (1, 2):
                rows.append(_train(processes, seed, args.cache / f"train-{processes}p-seed{seed}"))
                log.info("train %d process(es), seed %d: %s", processes, seed, rows[-1])
        result.update(train_args=TRAIN_ARGS, runs=rows, training=_summary(
            rows, ("test_accuracy",), ("images_per_second", "train_seconds", "wall_seconds")))
    if "inversion" in args.only:
        classifier = args.cache / "train-1p-seed0"
        if not (classifier / "card.json").is_file():
            _train(1, 0, classifier)
        rows = []
        for seed in seeds:
            for processes in (1, 2):
                rows.append(_invert(processes, seed, classifier, args.cache / f"invert-{processes}p-seed{seed}"))
                log.info("invert %d process(es), seed %d: %s", processes, seed, rows[-1])
        result.update(invert_args=INVERT_ARGS, invert_runs=rows, inversion=_summary(
            rows, ("validity",), ("samples_per_second", "fit_seconds", "wall_seconds")))
    if "ood" in args.only:
        classifier = args.cache / "train-1p-seed0"
        if not (classifier / "card.json").is_file():
            _train(1, 0, classifier)
        rows = []
        for seed in seeds:
            for processes in (1, 2):
                rows.append(_ood(processes, seed, classifier, args.cache / f"ood-{processes}p-seed{seed}"))
                log.info("ood train %d process(es), seed %d: %s", processes, seed, rows[-1])
        result.update(ood_args=OOD_ARGS, ood_runs=rows, ood=_summary(
            rows, ("val_accuracy", "test_accuracy", "garbage_size"), ("seconds", "wall_seconds")))
    if "bnn" in args.only:
        result.update(bnn_run=BNN.to_dict(), bnn=_bnn(args))
    path = write_results(args.results, "scale", result, _markdown)
    log.info("wrote %s", path)


def _bnn(args: argparse.Namespace) -> dict[str, Any]:
    """The BNN queries, serial against ``--jobs 2``."""
    bnn_run = args.cache / "bnn-digits-64-32-10"
    if not (bnn_run / "card.json").is_file():
        run_bnn_training(BNN, bnn_run, force=True, progress=False)
    n_images = 6 if args.quick else 20
    queries = {"robustness": {"indices": list(range(n_images)), "seconds": 10.0},
               "sample": {"n": 20 if args.quick else 50, "seconds": 30.0}}
    bnn = {}
    for name, params in queries.items():
        serial_s, serial = _query(name, bnn_run, params, 1)
        parallel_s, parallel = _query(name, bnn_run, params, 2)
        bnn[name] = {"params": params, "serial_seconds": serial_s, "jobs2_seconds": parallel_s,
                     "speedup": serial_s / parallel_s, "same_answer": drop_seconds(serial) == drop_seconds(parallel)}
        log.info("%s: serial %.2f s, --jobs 2 %.2f s, same answer %s", name, serial_s, parallel_s, bnn[name]["same_answer"])
    return bnn


def _markdown(res: dict[str, Any]) -> str:
    t1, t2 = res["training"]["1"], res["training"]["2"]
    lines = ["# Scale-out: 1 process against 2", "", machine_line(res),
             f" Load average at the start {res['load_avg_at_start']}; every process used one torch thread.", "",
             "## Classifier training (`netinvert train` against `torchrun --nproc_per_node 2 netinvert train`)", "",
             f"Digits CNN (channels 16, 32; hidden 64), {' '.join(res['train_args'][8:12])}: equal total steps "
             f"(the batch is the global batch; each of 2 processes takes 32 of it). Seeds {res['seeds']}; medians.", "",
             "| processes | test accuracy per seed | mean | images/s (training time) | training s | wall s (with start-up) |",
             "|---:|---|---:|---:|---:|---:|"]
    for k, t in (("1", t1), ("2", t2)):
        lines.append(f"| {k} | {', '.join(f'{a:.4f}' for a in t['test_accuracy'])} | {t['mean_test_accuracy']:.4f} | "
                     f"{t['median_images_per_second']:.0f} | {t['median_train_seconds']:.2f} | {t['median_wall_seconds']:.1f} |")
    lines += ["", f"Throughput ratio 2/1 processes: {t2['median_images_per_second'] / t1['median_images_per_second']:.2f}x.", ""]
    if "inversion" in res:
        i1, i2 = res["inversion"]["1"], res["inversion"]["2"]
        lines += ["## Generator inversion (`netinvert invert` against `torchrun --nproc_per_node 2 netinvert invert`)", "",
                  f"The digits CNN above (seed 0), {' '.join(res['invert_args'][:4])}: equal total steps of the same global "
                  f"batch (each of 2 processes generates 32 of it). Seeds {res['seeds']}; medians.", "",
                  "| processes | validity per seed | mean | samples/s (fitting time) | fitting s | wall s (with start-up) |",
                  "|---:|---|---:|---:|---:|---:|"]
        for k, t in (("1", i1), ("2", i2)):
            lines.append(f"| {k} | {', '.join(f'{a:.3f}' for a in t['validity'])} | {t['mean_validity']:.3f} | "
                         f"{t['median_samples_per_second']:.0f} | {t['median_fit_seconds']:.2f} | {t['median_wall_seconds']:.1f} |")
        lines += ["", f"Throughput ratio 2/1 processes: "
                      f"{i2['median_samples_per_second'] / i1['median_samples_per_second']:.2f}x.", ""]
    if "ood" in res:
        o1, o2 = res["ood"]["1"], res["ood"]["2"]
        lines += ["## OOD training (`netinvert ood train` against `torchrun --nproc_per_node 2 netinvert ood train`)", "",
                  f"From the digits CNN above (seed 0), {' '.join(res['ood_args'][:6])}: the same rounds, each inversion and "
                  f"retraining data parallel. Seeds {res['seeds']}; medians.", "",
                  "| processes | val accuracy per seed | test accuracy per seed | garbage set | loop s | wall s (with start-up) |",
                  "|---:|---|---|---|---:|---:|"]
        for k, t in (("1", o1), ("2", o2)):
            lines.append(f"| {k} | {', '.join(f'{a:.4f}' for a in t['val_accuracy'])} | "
                         f"{', '.join(f'{a:.4f}' for a in t['test_accuracy'])} | {', '.join(str(g) for g in t['garbage_size'])} | "
                         f"{t['median_seconds']:.1f} | {t['median_wall_seconds']:.1f} |")
        lines += ["", f"Speed ratio 2/1 processes (loop seconds): {o1['median_seconds'] / o2['median_seconds']:.2f}x.", ""]
    lines += ["## BNN queries (serial against `--jobs 2`)", "",
              "| query | params | serial s | --jobs 2 s | speed-up | same answer |", "|---|---|---:|---:|---:|---|"]
    for name, b in res["bnn"].items():
        shown = {k: (f"{v[0]}-{v[-1]}" if isinstance(v, list) else v) for k, v in b["params"].items()}
        lines.append(f"| {name} | {shown} | {b['serial_seconds']:.2f} | {b['jobs2_seconds']:.2f} | {b['speedup']:.2f}x | "
                     f"{b['same_answer']} |")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in res.get("notes", [])]
    lines += ["", "Reproduce: `python bench/scale.py` (writes this file and scale.json)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
