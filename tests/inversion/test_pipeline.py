"""run_inversion, run_image_prior and run_sampling on the digits data with tiny step budgets."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from pathlib import Path
import torch

from netinvert.exceptions import RunExistsError, RunFormatError
from netinvert.inversion import (
    InversionResult,
    InversionRunConfig,
    PriorRunConfig,
    load_image_prior,
    run_image_prior,
    run_inversion,
    run_sampling,
)
from netinvert.runs import file_sha256, read_card

HEADLINE = ("validity", "confidence", "verifier_accuracy", "frechet", "nn_ssim", "diversity", "real_diversity")


@pytest.fixture(scope="module")
def verifier_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline_verifiers")


def _config(clf_run, verifier_dir, **kw) -> InversionRunConfig:
    base = dict(classifier=clf_run, steps=4, width=8, batch_size=20, n_per_class=5, verifiers=verifier_dir, verifier_epochs=1,
                device="cpu", threads=1)
    return InversionRunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def inversion(digits_cnn_run, verifier_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "inv"
    return run_inversion(_config(digits_cnn_run, verifier_dir), out, progress=False)


def test_run_inversion_writes_one_whole_run_and_returns_its_metrics(inversion, digits_cnn_run, verifier_dir) -> None:
    out = inversion.run_dir
    assert isinstance(inversion, InversionResult) and inversion.steps == 4
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "history.json", "losses.png", "metrics.json", "samples.png",
                                                     "weights.safetensors"]
    assert not list(out.parent.glob(".inv*"))  # no staging folder or lock left behind
    card, metrics = read_card(out), json.loads((out / "metrics.json").read_text())
    assert card["metrics"] == {k: metrics[k] for k in HEADLINE} == {k: inversion.to_dict()[k] for k in HEADLINE}
    assert card["classifier_run"] == os.path.relpath(digits_cnn_run, out) and card["classifier_path"] == str(digits_cnn_run)
    assert card["classifier_sha256"] == file_sha256(digits_cnn_run / "weights.safetensors")
    assert card["weights_sha256"] == file_sha256(out / "weights.safetensors")
    assert card["threads"] == 1 and card["device"] == "cpu" and card["seed"] == 0
    assert card["config"] == {**_config(digits_cnn_run, verifier_dir).to_dict()}
    assert card["config"]["classifier"] == str(digits_cnn_run) and card["config"]["steps"] == 4
    assert set(card["verifiers"]["weights_sha256"]) and all(len(h) == 64 for h in card["verifiers"]["weights_sha256"].values())
    assert [row["n"] for row in metrics["per_class"]] == [5] * 10
    json.dumps(inversion.to_dict(), allow_nan=False)


def test_run_inversion_with_steps_is_reproducible(inversion, digits_cnn_run, verifier_dir, tmp_path) -> None:
    again = run_inversion(_config(digits_cnn_run, verifier_dir), tmp_path / "again", progress=False)
    assert file_sha256(again.run_dir / "weights.safetensors") == file_sha256(inversion.run_dir / "weights.safetensors")
    assert {k: v for k, v in again.to_dict().items() if k not in ("run_dir", "fit_seconds")} == \
           {k: v for k, v in inversion.to_dict().items() if k not in ("run_dir", "fit_seconds")}


@pytest.mark.parametrize(("change", "match"), [
    ({"n_per_class": 0}, r"'n_per_class' parameter of InversionRunConfig must be an int in \[1, inf\)\. Got 0 instead"),
    ({"verifier_epochs": 0}, r"'verifier_epochs' parameter of InversionRunConfig must be an int in \[1, inf\)"),
    ({"seconds": 0.0, "steps": None}, r"'seconds' parameter of InversionRunConfig must be a float in \(0, inf\)"),
    ({"steps": 0}, r"'steps' parameter"),
    ({"temperature": -1.0}, r"'temperature' parameter"),
    ({"dropout": 1.0}, r"'dropout' parameter of InversionRunConfig must be a float in \[0, 1\)"),
    ({"preset": "mnist"}, r"'preset' parameter of InversionRunConfig must be one of \['default', 'fashion'"),
    ({"conditioning": "hidden"}, r"'conditioning' parameter"),
    ({"preset": "fashion-prior"}, r"needs an image prior"),
])
def test_invalid_configs_are_refused_before_any_work(change, match, digits_cnn_run, verifier_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match=match):
        run_inversion(_config(digits_cnn_run, verifier_dir, **change), tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_run_inversion_never_writes_into_its_inputs_and_keeps_a_full_out(digits_cnn_run, verifier_dir, tmp_path) -> None:
    before = sorted(p.name for p in digits_cnn_run.iterdir())
    with pytest.raises(ValueError, match="overlaps the input"):
        run_inversion(_config(digits_cnn_run, verifier_dir), digits_cnn_run, force=True, progress=False)
    assert sorted(p.name for p in digits_cnn_run.iterdir()) == before
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(RunExistsError, match="already holds files; pass --force"):
        run_inversion(_config(digits_cnn_run, verifier_dir), full, progress=False)
    assert [p.name for p in full.iterdir()] == ["keep.txt"]


def test_run_sampling_writes_a_new_folder_and_reproduces_with_the_seed(inversion, digits_cnn_run, tmp_path) -> None:
    run_files = sorted(p.name for p in inversion.run_dir.iterdir())
    a = run_sampling(inversion.run_dir, "7", 4, tmp_path / "a", seed=3, device="cpu")
    b = run_sampling(inversion.run_dir, 7, 4, tmp_path / "b", seed=3, device="cpu")
    c = run_sampling(inversion.run_dir, 7, 4, tmp_path / "c", seed=4, device="cpu")
    assert (a.label, a.n, a.seed) == (7, 4, 3) and 0.0 <= a.validity <= 1.0
    xa, xb, xc = (np.load(r.run_dir / "samples.npz")["x"] for r in (a, b, c))
    assert xa.shape == (4, 1, 8, 8) and np.array_equal(xa, xb) and not np.array_equal(xa, xc)
    card = read_card(a.run_dir)
    assert card["kind"] == "samples" and card["label"] == 7 and card["seed"] == 3
    assert card["run_weights_sha256"] == file_sha256(inversion.run_dir / "weights.safetensors")
    assert card["metrics"] == {"validity": a.validity, "confidence": a.confidence}
    assert sorted(p.name for p in inversion.run_dir.iterdir()) == run_files  # nothing written into the run
    with pytest.raises(ValueError, match="overlaps the input"):
        run_sampling(inversion.run_dir, 7, 2, inversion.run_dir / "samples", device="cpu")
    with pytest.raises(ValueError, match="'n' parameter of run_sampling must be an int in \\[1, inf\\)"):
        run_sampling(inversion.run_dir, 7, 0, tmp_path / "d", device="cpu")
    with pytest.raises(RunFormatError, match="'netinvert invert'"):
        run_sampling(digits_cnn_run, 7, 2, tmp_path / "e", device="cpu")


def test_run_image_prior_then_invert_through_it(digits_cnn_run, verifier_dir, tmp_path) -> None:
    prior = run_image_prior(PriorRunConfig(code_dim=4, epochs=2, device="cpu", threads=1), tmp_path / "prior", progress=False)
    assert prior.dataset == "digits" and prior.code_dim == 4 and prior.test_mse > 0
    assert sorted(p.name for p in prior.run_dir.iterdir()) == ["card.json", "samples.png", "weights.safetensors"]
    card = read_card(prior.run_dir)
    assert card["kind"] == "image-prior" and card["weights_sha256"] == file_sha256(prior.run_dir / "weights.safetensors")
    assert card["config"]["epochs"] == 2 and card["threads"] == 1
    assert load_image_prior(prior.run_dir).code_dim == 4
    with pytest.raises(ValueError, match="'epochs' parameter of PriorRunConfig"):
        run_image_prior(PriorRunConfig(epochs=0), tmp_path / "bad")
    inv = run_inversion(_config(digits_cnn_run, verifier_dir, image_prior=prior.run_dir, steps=2), tmp_path / "inv", progress=False)
    card = read_card(inv.run_dir)
    assert card["generator"] == "prior" and card["image_prior_sha256"] == file_sha256(prior.run_dir / "weights.safetensors")
    assert torch.isfinite(torch.tensor(inv.validity))


def test_a_diverged_run_keeps_the_last_good_generator_and_names_its_folder(digits_cnn_run, verifier_dir, tmp_path,
                                                                          monkeypatch) -> None:
    from netinvert.exceptions import TrainingDivergedError
    from netinvert.inversion import Inverter

    fit = Inverter.fit

    def diverging_fit(self, steps=None, seconds=None, progress=True, **checkpointing):
        fit(self, steps=2, progress=False, **checkpointing)  # a usable generator, as Inverter.fit leaves one after divergence
        raise TrainingDivergedError("Inversion diverged at step 2: the loss term(s) ce became non-finite.")

    monkeypatch.setattr(Inverter, "fit", diverging_fit)
    out = tmp_path / "diverged"
    with pytest.raises(TrainingDivergedError, match=f"became non-finite\\. The last good generator is saved in {out}"):
        run_inversion(_config(digits_cnn_run, verifier_dir), out, progress=False)
    card = read_card(out)
    assert not (out / "checkpoint.safetensors").exists()  # the checkpoint never stays in a finished run
    assert "became non-finite" in card["diverged"] and card["weights_sha256"] == file_sha256(out / "weights.safetensors")
    assert not (out / "metrics.json").exists()
    # a run that diverges never replaces the complete run --force was to replace
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(TrainingDivergedError, match="is kept; nothing was written"):
        run_inversion(_config(digits_cnn_run, verifier_dir), out, force=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    monkeypatch.setattr(Inverter, "fit", fit)
    loaded = run_sampling(out, 3, 2, tmp_path / "s", device="cpu")  # the saved generator is usable
    assert loaded.n == 2


def test_a_verifier_cache_inside_an_input_is_refused(digits_cnn_run, tmp_path) -> None:
    before = sorted(p.name for p in Path(digits_cnn_run).iterdir())
    with pytest.raises(ValueError, match="verifier cache .* overlaps the input"):
        run_inversion(_config(digits_cnn_run, Path(digits_cnn_run) / "verifiers"), tmp_path / "inv", progress=False)
    assert sorted(p.name for p in Path(digits_cnn_run).iterdir()) == before and not (tmp_path / "inv").exists()
