"""The README's main job, end to end, with test-sized budgets."""

from __future__ import annotations

import json

import pytest

from netinvert.cli import main


@pytest.mark.slow
def test_demo_trains_inverts_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--seconds", "3", "--bnn-preimages", "2", "--device", "cpu", "--threads", "1"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    report = (out / "report.md").read_text()
    for picture in ("inversion/samples.png", "inversion/losses.png", "bnn_preimages.png"):
        assert picture in report and (out / picture).stat().st_size > 1000
    metrics = json.loads((out / "inversion" / "metrics.json").read_text())
    assert f"{metrics['validity']:.3f}" in report and printed["validity"] == metrics["validity"]
    bnn = json.loads((out / "bnn_preimages.json").read_text())
    # every label of a digits BNN has preimages; each was re-checked by PyTorch inside SatInverter
    assert [r["found"] for r in bnn["labels"]] == [2] * 10
    assert json.loads((out / "classifier" / "card.json").read_text())["test_accuracy"] > 0.9
    card = json.loads((out / "card.json").read_text())
    assert card["kind"] == "demo" and card["threads"] == 1 and card["metrics"]["bnn_preimages"] == 20
    # a second demo into the same folder is refused, and with --force replaces it
    assert main(argv) == 2 and "--force" in capsys.readouterr().err
    assert (out / "report.md").read_text() == report
