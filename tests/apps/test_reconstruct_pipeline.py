"""netinvert reconstruct end to end on digits (100 members, test-sized budgets), its evaluation and refusals,
and the TLDR loss terms against closed forms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from netinvert.apps.reconstruct import ReconstructConfig, run_reconstruction, run_reconstruction_evaluation
from netinvert.cli import main
from netinvert.exceptions import RunFormatError, UnknownNameError
from netinvert.inversion import PriorRunConfig, make_loss, preset, run_image_prior
from netinvert.inversion._losses import per_sample_grad_norm
from netinvert.models import build_model


def test_grad_norm_equals_the_closed_form_of_a_linear_head_and_a_loop() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 8, 8), n_classes=10, hidden=[16]).eval()
    x, y = torch.rand(6, 1, 8, 8, requires_grad=True), torch.randint(0, 10, (6,))
    got = per_sample_grad_norm(model, x, y, "head")
    logits, h = model.forward_with_features(x)
    err = torch.softmax(logits, 1) - F.one_hot(y, 10)
    # d CE / d W = err h^T and d CE / d b = err: the squared norm is |err|^2 (|h|^2 + 1)
    assert torch.allclose(got, err.pow(2).sum(1) * (h.flatten(1).pow(2).sum(1) + 1), rtol=1e-4)
    everything = per_sample_grad_norm(model, x, y, "all")
    for i in range(3):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        assert float(everything[i].detach()) == pytest.approx(sum(float(p.grad.pow(2).sum()) for p in model.parameters()), rel=1e-4)
    got.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable in the sample: the generator learns from it
    with pytest.raises(ValueError, match="'layers' parameter of grad_norm"):
        make_loss("grad_norm", layers="first")


def test_perturbed_terms_are_registered_and_checked() -> None:
    assert preset("tldr")["conditioning"] == "label" and len(preset("tldr")["losses"]) == 9
    assert make_loss("kl_perturbed", noise=0.2).params == {"noise": 0.2, "drop": 0.1}
    with pytest.raises(ValueError, match="'drop' parameter of ce_perturbed must be a float in \\[0, 1\\)"):
        make_loss("ce_perturbed", drop=1.0)


ARGS = ["--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def member_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "clf"
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--model-param", "hidden=[64]", "--epochs", "30",
                 "--subset", "100", "--subset-seed", "0", "--out", str(out), "--no-progress", *ARGS]) == 0
    return out


def test_reconstruct_end_to_end(member_classifier: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    out = tmp_path / "rec"
    assert main(["reconstruct", "--classifier", str(member_classifier), "--out", str(out), "--steps", "30",
                 "--no-progress", *ARGS]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 100 and printed["steps"] == 30  # as many reconstructions as members
    report = printed["report"]
    assert report["n_members"] == report["n_non_members"] == 100
    lo, hi = report["advantage_ci95"]
    assert lo <= report["advantage"] <= hi
    assert report["advantage"] == pytest.approx(report["member_mean_ssim"] - report["non_member_mean_ssim"], abs=1e-6)
    for name in ("weights.safetensors", "reconstructions.safetensors", "samples.png", "matches.png", "matching.json",
                 "metrics.json", "card.json"):
        assert (out / name).is_file(), name
    card = json.loads((out / "card.json").read_text())
    assert card["kind"] == "reconstruction" and card["membership"] == report
    # evaluate recomputes the same numbers from the recorded members
    assert main(["reconstruct", "evaluate", str(out), "--threads", "1", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["report"] == report
    if not torch.cuda.is_available():  # a GPU asked for and missing is an error, not a silent CPU run
        assert main(["reconstruct", "evaluate", str(out), "--threads", "1", "--device", "cuda"]) == 2
        assert "no CUDA GPU is available" in capsys.readouterr().err


def _folder(root: Path, images: torch.Tensor) -> Path:
    (root / "any").mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8)).save(root / "any" / f"{i}.png")
    return root


def test_folders_for_a_model_without_members(member_classifier: Path, digits_cnn_run: Path, digits, tmp_path: Path) -> None:
    rec = run_reconstruction(ReconstructConfig(classifier=digits_cnn_run, steps=10, n=20, device="cpu", threads=1),
                             tmp_path / "rec", progress=False)
    assert rec.report is None  # the classifier recorded no members: nothing to score yet
    with pytest.raises(ValueError, match="recorded no members"):
        run_reconstruction_evaluation(rec.run_dir)
    members = _folder(tmp_path / "m", digits.x_train[:20])
    non_members = _folder(tmp_path / "n", digits.x_train[20:40])
    result = run_reconstruction_evaluation(rec.run_dir, tmp_path / "eval", members=members, non_members=non_members)
    assert result.report["n_members"] == 20 and (tmp_path / "eval" / "matches.png").is_file()
    in_memory = run_reconstruction_evaluation(rec.run_dir, members=digits.x_train[:20], non_members=digits.x_train[20:40])
    # the folders hold the same images as 8-bit PNGs: the same matching up to rounding
    assert in_memory.report["advantage"] == pytest.approx(result.report["advantage"], abs=0.01)
    with pytest.raises(ValueError, match="Give both --members and --non-members"):
        run_reconstruction_evaluation(rec.run_dir, members=members)
    (tmp_path / "empty" / "none").mkdir(parents=True)
    with pytest.raises(ValueError, match="members folder"):
        run_reconstruction_evaluation(rec.run_dir, members=tmp_path / "empty", non_members=non_members)
    with pytest.raises(ValueError, match="only 5 members"):
        run_reconstruction_evaluation(rec.run_dir, members=_folder(tmp_path / "few", digits.x_train[:5]),
                                      non_members=non_members)
    with pytest.raises(RunFormatError, match="not one of 'netinvert reconstruct'"):
        run_reconstruction_evaluation(member_classifier)


def test_bad_config_refused_before_work(member_classifier: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'preset' parameter of ReconstructConfig"):
        run_reconstruction(ReconstructConfig(classifier=member_classifier, preset="best"), tmp_path / "r")
    with pytest.raises(UnknownNameError):
        run_reconstruction(ReconstructConfig(classifier=member_classifier, losses=("kl:1", "magic:2")), tmp_path / "r")
    with pytest.raises(ValueError, match="'n' parameter"):
        run_reconstruction(ReconstructConfig(classifier=member_classifier, n=0), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_per_sample_baseline_optimises_pixels_under_the_same_losses(member_classifier: Path, tmp_path: Path) -> None:
    from netinvert.apps.reconstruct import optimise_inputs
    from netinvert.models import load_classifier_run

    clf, _ = load_classifier_run(member_classifier)
    x, y, done = optimise_inputs(clf, preset("tldr")["losses"], 30, steps=20, seed=0)
    assert x.shape == (30, 1, 8, 8) and done == 20 and 0 <= x.min() and x.max() <= 1
    assert torch.bincount(y, minlength=10).tolist() == [3] * 10  # class-balanced
    x, y, _ = optimise_inputs(clf, ["ce:1", "tv:0.05"], 30, steps=60, seed=0)
    with torch.no_grad():
        assert float((clf(x).argmax(1) == y).float().mean()) == 1.0  # the pixels were optimised towards their labels
    result = run_reconstruction(ReconstructConfig(classifier=member_classifier, method="per-sample", steps=20, n=100,
                                                  device="cpu", threads=1), tmp_path / "px", progress=False)
    assert result.steps == 20 and result.report["n_reconstructions"] == 100
    assert not (tmp_path / "px" / "weights.safetensors").exists()  # no generator to save
    with pytest.raises(ValueError, match="needs a budget"):
        optimise_inputs(clf, ["ce:1"], 4, steps=None)
    with pytest.raises(ValueError, match="'method' parameter of ReconstructConfig"):
        run_reconstruction(ReconstructConfig(classifier=member_classifier, method="svd"), tmp_path / "k")


def test_reconstruct_through_a_prior_that_left_out_both_sets(member_classifier: Path, digits_cnn_run: Path, digits,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prior = tmp_path / "prior"
    assert main(["prior", "--dataset", "digits", "--epochs", "1", "--exclude-members", str(member_classifier),
                 "--out", str(prior), "--no-progress", *ARGS]) == 0
    card = json.loads((prior / "card.json").read_text())
    assert card["n_images"] == len(digits.x_train) - 200  # 100 members and 100 non-members left out
    assert card["excluded"][0]["members"] == card["excluded"][0]["non_members"] == 100
    assert card["config"]["exclude_members"] == [str(member_classifier)]
    capsys.readouterr()
    out = tmp_path / "rec"
    assert main(["reconstruct", "--classifier", str(member_classifier), "--image-prior", str(prior), "--out", str(out),
                 "--steps", "5", "-n", "20", "--no-progress", *ARGS]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    assert report["n_reconstructions"] == 20
    rec_card = json.loads((out / "card.json").read_text())
    assert rec_card["generator"] == "prior" and rec_card["image_prior_sha256"] == json.loads(
        (prior / "card.json").read_text())["weights_sha256"]
    # refusals, before any work: a prior without a generator, a classifier that recorded no members
    with pytest.raises(ValueError, match="--method per-sample has no generator"):
        run_reconstruction(ReconstructConfig(classifier=member_classifier, method="per-sample", image_prior=prior),
                           tmp_path / "x")
    assert main(["prior", "--dataset", "digits", "--exclude-members", str(digits_cnn_run), "--out",
                 str(tmp_path / "p2"), "--no-progress", *ARGS]) == 2
    assert "records no members" in capsys.readouterr().err and not (tmp_path / "p2").exists()
    assert main(["reconstruct", "--classifier", str(member_classifier), "--image-prior", str(member_classifier),
                 "--out", str(tmp_path / "r2"), "--steps", "5", "--no-progress", *ARGS]) == 2
    assert "pass a folder written by 'netinvert prior'" in capsys.readouterr().err and not (tmp_path / "r2").exists()
    # the threads of the caller are its own again after a prior run (every workflow restores them)
    before = torch.get_num_threads()
    run_image_prior(PriorRunConfig(dataset="digits", epochs=1, exclude_members=(member_classifier,), device="cpu",
                                   threads=1), tmp_path / "p3", progress=False)
    assert torch.get_num_threads() == before
