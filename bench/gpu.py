"""GPU check: the same training and inversion commands on the CPU and on a CUDA device, in one run.

The prepared script for a machine with a GPU (issue 14, part 4): it trains the digits and Fashion-MNIST
CNNs and inverts them with ``netinvert ... --device cuda`` and with ``--device cpu`` on the same machine,
so every speed-up is a ratio measured in one run, and then runs inversion benchmark tier a on the GPU
(``bench/inversion.py --device cuda``) into ``RESULTS/gpu/``. It never runs in the tests.

Usage::

    python bench/gpu.py                               # on the GPU machine: writes bench/results/gpu.{json,md}
    python bench/gpu.py --devices cpu --quick --results /tmp/r   # smoke check of the script without a GPU

Fashion-MNIST rows need the dataset (``--data-root``, or Debian's ``dataset-fashion-mnist``); they are
skipped, and say so, without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _machine import commit_record, machine_record
from _results import machine_line, write_results

log = logging.getLogger("bench.gpu")
HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-c", "import sys; from netinvert.cli import main; sys.exit(main())"]

#: Each job: the data set, the classifier training arguments, the inversion steps (``--quick`` divides them).
JOBS = {
    "digits": {"dataset": "digits", "train": ["--model", "cnn", "--epochs", "10"], "invert_steps": 1000},
    "fashion-mnist": {"dataset": "fashion-mnist", "train": ["--model", "cnn", "--epochs", "5"], "invert_steps": 1000},
}


def _run(args: list[str], out: Path) -> tuple[dict[str, Any], float]:
    """``netinvert ARGS --out OUT``: the run's card and the wall seconds; a failure raises with its stderr."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    done = subprocess.run([*CLI, *args, "--no-progress", "--out", str(out)], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"netinvert {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "card.json").read_text()), time.perf_counter() - t0


def _job(name: str, spec: dict[str, Any], device: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train and invert one classifier on ``device``: throughput and quality of each."""
    root = args.cache / f"{name}-{device}"
    common = ["--device", device, "--threads", str(args.threads), "--seed", "0"]
    data = ["--dataset", spec["dataset"], *(["--data-root", args.data_root] if args.data_root else [])]
    at = spec["train"].index("--epochs") + 1
    epochs = max(1, int(spec["train"][at]) // (5 if args.quick else 1))
    train = [*spec["train"][:at], str(epochs), *spec["train"][at + 1:]]
    card, wall = _run(["train", *data, *train, *common], root / "classifier")
    images = card["n_train"] * epochs
    steps = spec["invert_steps"] // (10 if args.quick else 1)
    inv, inv_wall = _run(["invert", "--classifier", str(root / "classifier"), "--steps", str(steps), *common], root / "inversion")
    return {"job": name, "device": device, "test_accuracy": card["test_accuracy"], "train_seconds": card["train_seconds"],
            "train_images_per_second": images / card["train_seconds"], "train_wall_seconds": wall,
            "invert_steps": steps, "invert_seconds": inv["fit_seconds"], "invert_steps_per_second": steps / inv["fit_seconds"],
            "validity": inv["metrics"]["validity"], "robust_verifier": inv["metrics"]["verifier_accuracy"]["robust"],
            "invert_wall_seconds": inv_wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="a fifth of the epochs, a tenth of the steps, no tier a")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the CPU rows")
    parser.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST files (default: the usual places)")
    parser.add_argument("--tier-seconds", type=float, default=60.0, help="tier a's digits budget on the GPU (Fashion: 5x)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache" / "gpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if "cuda" in args.devices and not torch.cuda.is_available():
        parser.error("no CUDA device here: run this on the GPU machine, or pass --devices cpu for a smoke check")
    args.cache.mkdir(parents=True, exist_ok=True)
    rows, skipped = [], {}
    for name, spec in JOBS.items():
        for device in args.devices:
            try:
                rows.append(_job(name, spec, device, args))
            except RuntimeError as exc:
                if name == "digits":
                    raise  # the embedded data set must work everywhere
                skipped[name] = str(exc).splitlines()[-1]
                log.warning("%s skipped: %s", name, skipped[name])
                break
            log.info("%s", rows[-1])
    tier = None
    if "cuda" in args.devices and not args.quick:
        cmd = [sys.executable, str(HERE / "inversion.py"), "--tiers", "a", "--device", "cuda", "--digits-seconds",
               str(args.tier_seconds), "--fashion-seconds", str(5 * args.tier_seconds), "--results",
               str(args.results / "gpu"), "--cache", str(args.cache / "inversion")]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        tier = {"command": cmd[1:], "returncode": done.returncode, "stderr_tail": done.stderr[-2000:]}
        summary = args.results / "gpu" / "inversion.json"
        if summary.is_file():
            tier["rows"] = json.loads(summary.read_text()).get("rows")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    result = {"benchmark": "gpu", "quick": args.quick, "gpu": gpu, "cpu_threads": args.threads, "rows": rows,
              "skipped": skipped, "tier_a": tier, "machine": machine_record("cuda" if gpu else "cpu"),
              "commit": commit_record()}
    path = write_results(args.results, "gpu", result, _markdown)
    log.info("wrote %s", path)


def _markdown(res: dict[str, Any]) -> str:
    lines = ["# The same commands on the CPU and the GPU", "", machine_line(res),
             f"GPU: {res['gpu'] or 'none (smoke check)'}; CPU rows use {res['cpu_threads']} torch thread(s).", "",
             "| job | device | test accuracy | train images/s | inversion steps | steps/s | validity | robust verifier |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['job']} | {r['device']} | {r['test_accuracy']:.4f} | {r['train_images_per_second']:.0f} | "
                     f"{r['invert_steps']} | {r['invert_steps_per_second']:.1f} | {r['validity']:.3f} | {r['robust_verifier']:.3f} |")
    by = {(r["job"], r["device"]): r for r in res["rows"]}
    for job in dict.fromkeys(r["job"] for r in res["rows"]):
        if (job, "cpu") in by and (job, "cuda") in by:
            c, g = by[job, "cpu"], by[job, "cuda"]
            lines.append(f"\n{job}: GPU/CPU training {g['train_images_per_second'] / c['train_images_per_second']:.1f}x, "
                         f"inversion {g['invert_steps_per_second'] / c['invert_steps_per_second']:.1f}x.")
    for job, why in res["skipped"].items():
        lines.append(f"\n{job} skipped: {why}")
    if res.get("tier_a"):
        lines += ["", f"Inversion tier a on the GPU: exit {res['tier_a']['returncode']}; rows in `gpu/inversion.md`."]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in res.get("notes", [])]
    lines += ["", "Reproduce: `python bench/gpu.py` on a machine with a CUDA GPU."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
