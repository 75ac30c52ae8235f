"""The demo workflow: the main job on the embedded digits data, end to end, as one run folder.

It trains a digits classifier, inverts it with a generator (per-class gallery, loss curves,
honest metrics), trains a binarised net and inverts it exactly with SAT, and writes a short
``report.md`` that shows the pictures beside the numbers, and ``report.html``: every run of the demo on
one self-contained page (pictures inlined) that a browser opens without the folder beside it. Each stage is the pipeline function a
user (or ``bench/``) calls, so the demo doubles as a smoke test of the whole tool.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..runs import atomic_write_bytes, read_json, staged_run, write_card, write_json

__all__ = ["DemoConfig", "DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """Budgets of the demo: ``seconds`` of generator training, ``bnn_preimages`` SAT preimages per label."""

    seconds: float = 60.0
    bnn_preimages: int = 8
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DemoResult:
    """The demo's headline numbers and where its report is."""

    run_dir: Path
    report: Path
    html_report: Path
    classifier_accuracy: float
    validity: float
    robust_verifier_accuracy: float | None
    bnn_test_accuracy: float
    bnn_preimages: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def run_demo(config: DemoConfig, out: str | Path, *, force: bool = False, progress: bool = True) -> DemoResult:
    """Train, invert and report on digits into ``out`` (``classifier/``, ``inversion/``, ``bnn/``, ``report.md``)."""
    from ..bnn import BNNRunConfig, run_bnn_training
    from ..inversion import InversionRunConfig, run_inversion
    from ..models import ClassifierRunConfig, run_training

    if not config.seconds > 0:
        raise ValueError(f"The 'seconds' parameter of the demo must be > 0. Got {config.seconds!r} instead.")
    if config.bnn_preimages < 1:
        raise ValueError(f"The 'bnn_preimages' parameter of the demo must be an int in [1, inf). Got {config.bnn_preimages!r} instead.")
    common = {"seed": config.seed, "threads": config.threads}
    with staged_run(out, force=force) as tmp:
        clf = run_training(ClassifierRunConfig(dataset="digits", model="cnn", device=config.device, **common),
                           tmp / "classifier", progress=progress)
        inv = run_inversion(InversionRunConfig(classifier=clf.run_dir, seconds=config.seconds, device=config.device, **common),
                            tmp / "inversion", progress=progress)
        bnn = run_bnn_training(BNNRunConfig(dataset="digits", **common), tmp / "bnn", progress=progress)
        gallery = _bnn_gallery(tmp / "bnn", config.bnn_preimages, tmp / "bnn_preimages.png")
        write_json(tmp / "bnn_preimages.json", gallery)
        clf_card, bnn_card = read_json(tmp / "classifier" / "card.json"), read_json(tmp / "bnn" / "card.json")
        metrics = read_json(tmp / "inversion" / "metrics.json")
        _write_report(tmp, clf_card, metrics, bnn_card, gallery)
        result = {"classifier_accuracy": clf.test_accuracy, "validity": inv.validity,
                  "robust_verifier_accuracy": (inv.verifier_accuracy or {}).get("robust"),
                  "bnn_test_accuracy": bnn.test_accuracy, "bnn_preimages": sum(r["found"] for r in gallery["labels"])}
        write_card(tmp, {"kind": "demo", "config": config.to_dict(), "threads": torch.get_num_threads(), "metrics": result})
        _write_html(tmp, Path(out))
    out = Path(out).absolute()
    return DemoResult(run_dir=out, report=out / "report.md", html_report=out / "report.html", **result)


def _write_html(tmp: Path, out: Path) -> None:
    """``report.html``: the demo and its runs on one page, the folder named as it will be once complete."""
    from ._html import render_html_report

    html = render_html_report([tmp], title="netinvert demo: digits", names=[str(out)])
    atomic_write_bytes(tmp / "report.html", html.encode("utf-8"))


def _bnn_gallery(run: Path, n_per_label: int, out_png: Path) -> dict[str, Any]:
    """Enumerate SAT preimages of every label of a BNN run and save them as one grid."""
    from ..bnn import load_bnn_run, run_bnn_query
    from . import save_class_grid

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


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _write_report(out: Path, clf_card: dict, metrics: dict, bnn_card: dict, bnn: dict) -> None:
    """A one-page markdown report: each figure next to the numbers that judge it."""
    m = metrics
    lines = [
        "# netinvert demo: digits",
        "",
        "The same on one page, pictures inlined, for a browser: [report.html](report.html).",
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
              f"BNN test accuracy {_fmt(bnn_card.get('test_accuracy'))}; input rule: {bnn_card['binarizer']['rule']}.", ""]
    if bnn.get("grid"):
        lines += [f"![BNN preimages]({bnn['grid']})", "",
                  "Each preimage is exact (the net really gives it that label), yet most look nothing like",
                  "a digit: the net accepts far more of its input space than its training data covers.", ""]
    lines += ["| label | preimages found | status | seconds |", "|---:|---:|---|---:|"]
    lines += [f"| {r['label']} | {r['found']} | {r['status']} | {r['seconds']} |" for r in bnn["labels"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
