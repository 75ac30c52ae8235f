"""``netinvert invert``, ``prior`` and ``sample`` end to end on a digits classifier run folder."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from netinvert.cli import main
from netinvert.runs import file_sha256, read_card

HEADLINE = ("validity", "confidence", "verifier_accuracy", "frechet", "nn_ssim", "diversity", "real_diversity")
TINY = ["--steps", "3", "--width", "8", "--batch-size", "20", "--verifier-epochs", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def invert_run(digits_cnn_run, tmp_path_factory):
    """One CLI run with the verifiers in their default place (OUT/verifiers), and what it printed."""
    out = tmp_path_factory.mktemp("invert") / "run"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["invert", "--classifier", str(digits_cnn_run), "--out", str(out), "--steps", "5", "--width", "8",
                     "--batch-size", "20", "-n", "6", "--verifier-epochs", "1", "--no-progress", "--device", "cpu",
                     "--loss", "ce:1", "--loss", "cosine:1:scope=batch", "--loss", "bn:0.2", "--conditioning", "vector",
                     "--temperature", "0.2", "--preset", "fashion", "--ema", "0.9", "--threads", "1"])
    assert code == 0
    return out, json.loads(buf.getvalue())


def test_invert_writes_one_run_folder_whose_card_agrees_with_its_metrics(invert_run, digits_cnn_run) -> None:
    out, printed = invert_run
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "config.toml", "history.json", "losses.png", "metrics.json",
                                                     "samples.png", "verifiers", "weights.safetensors"]
    card, metrics = read_card(out), json.loads((out / "metrics.json").read_text())
    assert card["metrics"] == {k: metrics[k] for k in HEADLINE} == {k: printed[k] for k in HEADLINE}
    assert printed["run_dir"] == str(out) and printed["steps"] == 5
    assert card["classifier_sha256"] == file_sha256(digits_cnn_run / "weights.safetensors")
    assert card["weights_sha256"] == file_sha256(out / "weights.safetensors")
    assert card["threads"] == 1 and card["config"]["n_per_class"] == 6
    assert set(card["verifiers"]["weights_sha256"]) == {str(p.relative_to(out)) for p in (out / "verifiers").rglob("weights.safetensors")}
    # the options as the card records them: the preset fills what they leave open, explicit ones win
    assert card["kind"] == "inverter" and card["conditioning_params"] == {"temperature": 0.2}
    assert [(t["name"], t["weight"]) for t in card["losses"]] == [("ce", 1.0), ("cosine", 1.0), ("bn", 0.2)]
    assert card["losses"][1]["params"]["scope"] == "batch"
    assert card["preset"] == "fashion" and card["augment"] == {"name": "shift-flip", "params": {"shift": 2, "flip": 0.5}}
    assert card["params"]["dropout"] == 0.5 and card["params"]["lr"] == 1e-3 and card["params"]["ema"] == 0.9
    assert card["params"]["batch_size"] == 20 and card["generator_params"]["width"] == 8
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 5
    for name in ("samples.png", "losses.png"):
        with Image.open(out / name) as img:
            assert img.size[0] > 100 and img.size[1] > 100
    assert [(c["label"], c["n"]) for c in metrics["per_class"]] == [(k, 6) for k in range(10)]
    assert metrics["frechet"]["n_generated"] == metrics["frechet"]["n_real"] > 0


def test_sample_writes_pngs_an_npz_and_a_card_and_reproduces_with_the_seed(invert_run, tmp_path, capsys) -> None:
    out, _ = invert_run
    run_files = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert main(["sample", str(out), "--label", "7", "-n", "4", "--out", str(tmp_path / "s"), "--seed", "3", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["label"] == 7 and report["n"] == 4 and report["seed"] == 3 and report["run_dir"] == str(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["card.json", "config.toml", *[f"label7_{i:04d}.png" for i in range(4)], "samples.npz"]
    with Image.open(tmp_path / "s" / "label7_0000.png") as img:
        assert img.size == (8, 8)
    npz = np.load(tmp_path / "s" / "samples.npz")
    assert npz["x"].shape == (4, 1, 8, 8) and (npz["labels"] == 7).all()
    assert report["validity"] == float((npz["probs"].argmax(1) == 7).mean())
    again, other = tmp_path / "again", tmp_path / "other"
    assert main(["sample", str(out), "--label", "7", "--n", "4", "--out", str(again), "--seed", "3", "--device", "cpu"]) == 0
    assert main(["sample", str(out), "--label", "7", "-n", "4", "--out", str(other), "--seed", "4", "--device", "cpu"]) == 0
    assert np.array_equal(np.load(again / "samples.npz")["x"], npz["x"])  # same seed (and the old --n), same samples
    assert not np.array_equal(np.load(other / "samples.npz")["x"], npz["x"])
    assert sorted(p.name for p in out.iterdir()) == run_files  # sample never writes into the run


def test_an_out_holding_files_is_refused_without_force_and_left_unchanged(digits_cnn_run, tmp_path, capsys) -> None:
    out = tmp_path / "full"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    verifiers = tmp_path / "verifiers"
    args = ["invert", "--classifier", str(digits_cnn_run), "--out", str(out), "--verifiers", str(verifiers), *TINY]
    assert main(args) == 2
    assert "already holds files; pass --force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    assert not verifiers.exists()  # refused before any work
    # with --force the old folder is replaced once the run is complete; the old --n-per-class still works
    assert main([*args, "--force", "--n-per-class", "3"]) == 0
    assert "notes.txt" not in [p.name for p in out.iterdir()]
    assert [c["n"] for c in json.loads((out / "metrics.json").read_text())["per_class"]] == [3] * 10


def test_an_out_equal_to_the_classifier_run_is_refused(digits_cnn_run, tmp_path, capsys) -> None:
    before = {p.name: file_sha256(p) for p in digits_cnn_run.iterdir()}
    assert main(["invert", "--classifier", str(digits_cnn_run), "--out", str(digits_cnn_run), "--force", *TINY]) == 2
    assert "overlaps the input" in capsys.readouterr().err
    assert {p.name: file_sha256(p) for p in digits_cnn_run.iterdir()} == before


def test_cli_errors_are_one_clean_line(invert_run, digits_cnn_run, tmp_path, capsys) -> None:
    out, _ = invert_run
    assert main(["sample", str(out), "--label", "eleven", "-n", "2", "--out", str(tmp_path / "x")]) == 2
    assert "Unknown label 'eleven'; use a class index or one of: 0, 1" in capsys.readouterr().err
    assert main(["sample", str(out), "--label", "12", "-n", "2", "--out", str(tmp_path / "x")]) == 2
    assert "'label' parameter of sample must be an int in [0, 9]" in capsys.readouterr().err
    assert main(["invert", "--classifier", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--steps", "1"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["invert", "--classifier", str(digits_cnn_run), "--out", str(tmp_path / "o"), "--steps", "1", "--loss", "xx:1"]) == 2
    assert "Unknown loss 'xx'. Valid names: bn, ce, ce_perturbed, cosine" in capsys.readouterr().err
    assert main(["invert", "--classifier", str(digits_cnn_run), "--out", str(tmp_path / "o"), "-n", "0", "--steps", "1"]) == 2
    assert "'n_per_class' parameter of InversionRunConfig must be an int in [1, inf). Got 0 instead." in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "x").exists()


def test_top_width_and_pairs_from_flags_and_config_reach_the_run_and_its_config(
        invert_run, digits_cnn_run, tmp_path, capsys) -> None:
    """The opt-in speed settings parse as flags and from --config, and the run records them."""
    from netinvert.cli import build_parser
    from netinvert.cli._config import tomllib

    args = build_parser().parse_args(["invert", "--classifier", "c", "--out", "o", "--top-width", "4", "--pairs", "batch"])
    assert (args.top_width, args.pairs) == (4, "batch")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["invert", "--classifier", "c", "--out", "o", "--pairs", "both"])
    assert "invalid choice: 'both' (choose from 'extra', 'batch')" in capsys.readouterr().err

    (tmp_path / "fast.toml").write_text('top_width = 4\npairs = "batch"\nloss = ["ce:1", "mode_seeking:0.05"]\n')
    out = tmp_path / "inv"
    assert main(["invert", "--config", str(tmp_path / "fast.toml"), "--classifier", str(digits_cnn_run), "--out", str(out),
                 "-n", "2", "--verifiers", str(invert_run[0] / "verifiers"), "--threads", "1", *TINY]) == 0
    capsys.readouterr()
    card = read_card(out)
    assert card["params"]["top_width"] == 4 and card["params"]["pairs"] == "batch"
    recorded = tomllib.loads((out / "config.toml").read_text())
    assert recorded["top_width"] == 4 and recorded["pairs"] == "batch"


def test_prior_then_invert_through_it(digits_cnn_run, tmp_path, capsys) -> None:
    """`netinvert prior` writes a loadable decoder and a grid of its samples; `invert --image-prior` uses it
    and its run folder (which carries the decoder's weights) samples without the prior folder."""
    from netinvert.inversion import load_image_prior

    prior_dir = tmp_path / "prior"
    assert main(["prior", "--dataset", "digits", "--out", str(prior_dir), "--code-dim", "8", "--epochs", "20", "--no-progress",
                 "--device", "cpu", "--seed", "1", "--threads", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"] == "digits" and info["test_mse"] > 0 and info["run_dir"] == str(prior_dir)
    assert load_image_prior(prior_dir).code_dim == 8 and read_card(prior_dir)["seed"] == 1
    with Image.open(prior_dir / "samples.png") as img:
        assert img.size[0] > 100
    out = tmp_path / "inv"
    assert main(["invert", "--classifier", str(digits_cnn_run), "--out", str(out), "--image-prior", str(prior_dir), "-n", "4",
                 "--verifiers", str(tmp_path / "verifiers"), *TINY]) == 0
    capsys.readouterr()
    card = read_card(out)
    assert card["generator"] == "prior" and card["image_prior_path"] == str(prior_dir)
    assert card["generator_params"]["prior_params"]["code_dim"] == 8
    rc = main(["invert", "--classifier", str(digits_cnn_run), "--out", str(tmp_path / "x"), "--preset", "fashion-prior",
               "--steps", "1", "--no-progress", "--device", "cpu"])
    assert rc == 2 and "--image-prior" in capsys.readouterr().err  # the preset needs a prior
    for p in prior_dir.iterdir():
        p.unlink()
    prior_dir.rmdir()
    assert main(["sample", str(out), "--label", "2", "-n", "3", "--out", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3
