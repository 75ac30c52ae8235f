"""``netinvert invert`` and ``netinvert sample`` end to end on a digits classifier run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from netinvert.cli import main
from netinvert.runs import read_card


@pytest.fixture(scope="module")
def invert_run(digits_cnn_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("invert") / "run"
    code = main(["invert", "--classifier", str(digits_cnn_run), "--out", str(out), "--steps", "5", "--width", "8",
                 "--batch-size", "20", "--n-per-class", "6", "--verifier-epochs", "1", "--no-progress", "--device", "cpu",
                 "--loss", "ce:1", "--loss", "cosine:1:scope=batch", "--loss", "bn:0.2", "--conditioning", "vector",
                 "--temperature", "0.2", "--preset", "fashion", "--ema", "0.9"])
    assert code == 0
    return out


def test_invert_writes_weights_card_figures_and_metrics(invert_run, capsys) -> None:
    card = read_card(invert_run)
    assert card["kind"] == "inverter" and card["conditioning_params"] == {"temperature": 0.2}
    assert [(t["name"], t["weight"]) for t in card["losses"]] == [("ce", 1.0), ("cosine", 1.0), ("bn", 0.2)]
    assert card["losses"][1]["params"]["scope"] == "batch"
    # the preset fills what the options leave open; explicit options (losses, width, batch size, ema) win
    assert card["preset"] == "fashion" and card["augment"] == {"name": "shift-flip", "params": {"shift": 2, "flip": 0.5}}
    assert card["params"]["dropout"] == 0.5 and card["params"]["lr"] == 1e-3 and card["params"]["ema"] == 0.9
    assert card["params"]["batch_size"] == 20 and card["generator_params"]["width"] == 8
    assert (invert_run / "weights.safetensors").is_file()
    assert len(json.loads((invert_run / "history.json").read_text())["loss"]) == 5
    for name in ("samples.png", "losses.png"):
        with Image.open(invert_run / name) as img:
            assert img.size[0] > 100 and img.size[1] > 100
    metrics = json.loads((invert_run / "metrics.json").read_text())
    for key in ("validity", "confidence", "nn_ssim"):
        assert 0.0 <= metrics[key] <= 1.0
    assert set(metrics["verifier_accuracy"]) >= {"plain", "robust"}
    assert set(metrics["frechet"]) >= {"generated", "real_vs_real"}
    for key in ("diversity", "real_diversity"):
        assert set(metrics[key]) >= {"classifier", "verifier", "pixel"}
    assert [c["label"] for c in metrics["per_class"]] == list(range(10))
    assert card["metrics"]["validity"] == metrics["validity"]


def test_sample_writes_pngs_and_an_npz_by_index_or_class_name(invert_run, tmp_path, capsys) -> None:
    capsys.readouterr()
    assert main(["sample", str(invert_run), "--label", "7", "-n", "4", "--out", str(tmp_path / "s"), "--seed", "3", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["label"] == 7 and report["n"] == 4 and 0 <= report["validity"] <= 1
    pngs = sorted((tmp_path / "s").glob("*.png"))
    assert len(pngs) == 4
    with Image.open(pngs[0]) as img:
        assert img.size == (8, 8)
    npz = np.load(tmp_path / "s" / "samples.npz")
    assert npz["x"].shape == (4, 1, 8, 8) and (npz["labels"] == 7).all()
    again = tmp_path / "again"
    assert main(["sample", str(invert_run), "--label", "7", "-n", "4", "--out", str(again), "--seed", "3", "--device", "cpu"]) == 0
    assert np.array_equal(np.load(again / "samples.npz")["x"], npz["x"])  # same seed, same samples


def test_cli_errors_are_one_clean_line(invert_run, digits_cnn_run, tmp_path, capsys) -> None:
    assert main(["sample", str(invert_run), "--label", "eleven", "-n", "2", "--out", str(tmp_path / "x")]) == 2
    assert "Unknown label 'eleven'; use a class index or one of: 0, 1" in capsys.readouterr().err
    assert main(["sample", str(invert_run), "--label", "12", "-n", "2", "--out", str(tmp_path / "x")]) == 2
    assert "'label' parameter of sample must be an int in [0, 9]" in capsys.readouterr().err
    assert main(["invert", "--classifier", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--steps", "1"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["invert", "--classifier", str(digits_cnn_run), "--out", str(tmp_path / "o"), "--steps", "1", "--loss", "xx:1"]) == 2
    assert "Unknown loss 'xx'. Valid names: bn, ce, cosine" in capsys.readouterr().err


def test_prior_then_invert_through_it(digits_cnn_run, tmp_path, capsys) -> None:
    """`netinvert prior` writes a loadable decoder and a grid of its samples; `invert --image-prior` uses it
    and its run folder (which carries the decoder's weights) samples without the prior folder."""
    from netinvert.inversion import load_image_prior

    prior_dir = tmp_path / "prior"
    assert main(["prior", "--dataset", "digits", "--out", str(prior_dir), "--code-dim", "8", "--epochs", "20", "--no-progress"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"] == "digits" and info["test_mse"] > 0
    assert load_image_prior(prior_dir).code_dim == 8
    with Image.open(prior_dir / "samples.png") as img:
        assert img.size[0] > 100
    out = tmp_path / "inv"
    assert main(["invert", "--classifier", str(digits_cnn_run), "--out", str(out), "--image-prior", str(prior_dir), "--steps", "3",
                 "--width", "8", "--batch-size", "20", "--n-per-class", "4", "--verifier-epochs", "1", "--no-progress",
                 "--device", "cpu"]) == 0
    capsys.readouterr()
    card = read_card(out)
    assert card["generator"] == "prior" and card["image_prior"] == str(prior_dir)
    assert card["generator_params"]["prior_params"]["code_dim"] == 8
    rc = main(["invert", "--classifier", str(digits_cnn_run), "--out", str(tmp_path / "x"), "--preset", "fashion-prior",
               "--steps", "1", "--no-progress", "--device", "cpu"])
    assert rc == 2 and "--image-prior" in capsys.readouterr().err  # the preset needs a prior
    for p in prior_dir.iterdir():
        p.unlink()
    prior_dir.rmdir()
    assert main(["sample", str(out), "--label", "2", "-n", "3", "--out", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3
