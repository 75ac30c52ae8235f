"""``netinvert demo``: the main job on the embedded digits data, end to end.

It trains a digits classifier, inverts it with a generator (per-class gallery, loss curves,
honest metrics), trains a binarised net and inverts it exactly with SAT, and writes a short
``report.md`` that shows the pictures beside the numbers. Each stage is the same command a user
would run by hand, so the demo doubles as a smoke test of the whole tool.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..runs import read_json, write_json
from ._common import add_common, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, invert and report on the embedded digits data (the main job)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for every run of the demo")
    p.add_argument("--seconds", type=float, default=60.0, help="generator training budget (default 60)")
    p.add_argument("--bnn-preimages", type=int, default=8, help="SAT preimages per label for the BNN gallery")
    add_common(p)
    p.set_defaults(func=cmd_demo)


def _run(argv: list[str]) -> None:
    """Run one sub-command as a user would; a failure stops the demo with its message."""
    from . import main

    code = main(argv)
    if code:
        raise RuntimeError(f"'netinvert {' '.join(argv)}' failed with exit code {code}.")


def _bnn_gallery(run: Path, n_per_label: int, out_png: Path) -> dict[str, Any]:
    """Enumerate SAT preimages of every label of a BNN run and save them as one grid."""
    from ..bnn import load_bnn_run, run_bnn_query
    from ..report import save_class_grid

    bnn_run = load_bnn_run(run)  # binarised inputs are pooled images
    images, labels, rows = [], [], []
    for label in range(bnn_run.net.n_classes):
        r = run_bnn_query("enumerate", bnn_run, {"label": label, "n": n_per_label, "seconds": 10.0}).value
        rows.append({"label": label, "found": len(r.inputs), "status": r.status.value, "seconds": round(r.seconds, 3)})
        for bits in r.inputs:
            images.append(torch.tensor(bits, dtype=torch.float32))
            labels.append(label)
    if images:
        side_h, side_w = bnn_run.image_shape
        save_class_grid(torch.stack(images).view(-1, 1, side_h, side_w), torch.tensor(labels), out_png,
                        title="BNN: SAT preimages of each label (every one checked by PyTorch)")
    return {"labels": rows, "grid": out_png.name if images else None}


def cmd_demo(args: argparse.Namespace) -> int:
    out: Path = args.out
    common = ["--seed", str(args.seed), "--device", args.device]
    clf, inv, bnn = out / "classifier", out / "inversion", out / "bnn"
    _run(["train", "--dataset", "digits", "--model", "cnn", "--out", str(clf), *common])
    _run(["invert", "--classifier", str(clf), "--out", str(inv), "--seconds", str(args.seconds), *common])
    _run(["bnn", "train", "--dataset", "digits", "--out", str(bnn), "--seed", str(args.seed)])
    bnn_summary = _bnn_gallery(bnn, args.bnn_preimages, out / "bnn_preimages.png")
    write_json(out / "bnn_preimages.json", bnn_summary)
    summary = _write_report(out, read_json(clf / "card.json"), read_json(inv / "metrics.json"),
                            read_json(bnn / "card.json"), bnn_summary)
    emit_json(summary)
    return 0


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _write_report(out: Path, clf_card: dict, metrics: dict, bnn_card: dict, bnn: dict) -> dict[str, Any]:
    """A one-page markdown report: each figure next to the numbers that judge it."""
    m = metrics
    lines = [
        "# netinvert demo: digits",
        "",
        f"Classifier: `{clf_card['model']}` on `{clf_card['dataset']}`, test accuracy {clf_card['test_accuracy']:.3f}.",
        "",
        "## Generator-based inversion",
        "",
        "![inverted samples](inversion/samples.png)",
        "",
        "| measure | inverted samples | real test images |",
        "|---|---:|---:|",
        f"| validity (classifier says the label) | {_fmt(m['validity'])} | |",
        f"| plain verifier accuracy | {_fmt(m['verifier_accuracy']['plain'])} | |",
        f"| robust verifier accuracy | {_fmt(m['verifier_accuracy']['robust'])} | |",
        f"| Frechet distance (robust-verifier features) | {_fmt(m['frechet']['generated'])} | {_fmt(m['frechet']['real_vs_real'])} (real vs real) |",
        f"| SSIM to nearest training image | {_fmt(m['nn_ssim'])} | |",
    ]
    for space in ("classifier", "verifier", "pixel"):
        lines.append(f"| within-class similarity, {space} (lower = more diverse) | "
                     f"{_fmt(m['diversity'][space])} | {_fmt(m['real_diversity'][space])} |")
    lines += ["", "Loss curves: ![losses](inversion/losses.png)", "",
              "## Exact inversion of a binarised net (SAT)", "",
              f"BNN test accuracy {_fmt(bnn_card.get('test_accuracy'))}; input rule: {bnn_card.get('binarizer')}.", ""]
    if bnn.get("grid"):
        lines += [f"![BNN preimages]({bnn['grid']})", "",
                  "Each preimage is exact (the net really gives it that label), yet most look nothing like",
                  "a digit: the net accepts far more of its input space than its training data covers.", ""]
    lines += ["| label | preimages found | status | seconds |", "|---:|---:|---|---:|"]
    lines += [f"| {r['label']} | {r['found']} | {r['status']} | {r['seconds']} |" for r in bnn["labels"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return {"report": str(out / "report.md"), "classifier_accuracy": clf_card["test_accuracy"],
            "validity": m["validity"], "robust_verifier_accuracy": m["verifier_accuracy"]["robust"],
            "bnn_test_accuracy": bnn_card.get("test_accuracy"),
            "bnn_preimages": sum(r["found"] for r in bnn["labels"])}
