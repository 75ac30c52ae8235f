"""The README's main job, end to end, with test-sized budgets."""

from __future__ import annotations

import json

import pytest

from netinvert.cli import main


@pytest.mark.slow
def test_demo_trains_inverts_and_reports(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seconds", "3", "--bnn-preimages", "2", "--device", "cpu"]) == 0
    report = (out / "report.md").read_text()
    for picture in ("inversion/samples.png", "inversion/losses.png", "bnn_preimages.png"):
        assert picture in report and (out / picture).stat().st_size > 1000
    metrics = json.loads((out / "inversion" / "metrics.json").read_text())
    assert f"{metrics['validity']:.3f}" in report
    bnn = json.loads((out / "bnn_preimages.json").read_text())
    # every label of a digits BNN has preimages; each was re-checked by PyTorch inside SatInverter
    assert [r["found"] for r in bnn["labels"]] == [2] * 10
    assert json.loads((out / "classifier" / "card.json").read_text())["test_accuracy"] > 0.9
