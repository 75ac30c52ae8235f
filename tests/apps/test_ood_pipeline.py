"""The garbage-class loop: widening, run_ood end to end, run_ood_evaluation, the CLI, refusals before work."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from netinvert.apps.ood import (OODRunConfig, calibrate_garbage_bias, garbage_argmax, list_selections, run_ood,
                                run_ood_evaluation, widen_head)
from netinvert.apps.ood._garbage import predict_logits, split_validation
from netinvert.cli import main
from netinvert.data import dataset_status, load_dataset
from netinvert.exceptions import RunExistsError, UnknownNameError, UnsupportedLayerError
from netinvert.models import build_model, load_classifier

TINY = dict(dataset="digits", model="mlp", model_params={"hidden": [16]}, base_epochs=2, rounds=2, steps=3,
            samples_per_round=20, noise_uniform=16, noise_gaussian=16, epochs_per_round=1, inverter_batch_size=22,
            verifier_epochs=1, device="cpu", threads=1)
#: 7 of the 144 validation images; the default 0.005 allows none on digits, so the bias would be 0.
BUDGET = 0.05


@pytest.mark.parametrize("name,params", [("mlp", {"hidden": [8]}), ("cnn", {"channels": [4], "hidden": 8})])
def test_widen_head_keeps_predictions(name: str, params: dict) -> None:
    data = load_dataset("digits")
    torch.manual_seed(0)
    clf = build_model(name, input_shape=data.input_shape, n_classes=data.n_classes, mean=data.mean, std=data.std, **params)
    clf.eval()
    wide = widen_head(clf)
    with torch.no_grad():
        before, after = clf(data.x_train), wide(data.x_train)
    assert wide.n_classes == data.n_classes + 1 and after.shape == (len(data.x_train), data.n_classes + 1)
    assert torch.equal(after[:, :-1], before)
    assert torch.equal(after.argmax(1), before.argmax(1))


def test_widen_head_refuses_foreign_models() -> None:
    with pytest.raises(UnsupportedLayerError, match="Cannot add a garbage class"):
        widen_head(torch.nn.Linear(4, 2))


@pytest.fixture(scope="module")
def ood_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ood") / "run"
    result = run_ood(OODRunConfig(**TINY, accuracy_budget=BUDGET), out, progress=False)
    assert result.run_dir == out and result.n_classes == 11 and result.rounds == 2
    return out


def test_run_ood_writes_a_complete_run(ood_run: Path) -> None:
    for name in ("card.json", "config.json", "history.json", "metrics.json", "garbage.png", "garbage.safetensors",
                 "rounds/round_01.png", "rounds/round_02.png", "base/card.json", "classifier/weights.safetensors",
                 "plain/weights.safetensors"):
        assert (ood_run / name).is_file(), name
    card = json.loads((ood_run / "card.json").read_text())
    assert card["kind"] == "ood" and card["garbage_index"] == 10 and card["threads"] == 1
    assert card["selection"]["name"] == "robust-disagree" and len(card["classifier_sha256"]) == 64
    history = json.loads((ood_run / "history.json").read_text())
    assert [h["round"] for h in history] == [0, 1, 2]
    assert history[0]["garbage_size"] == 32
    assert all(0 <= h["val_accuracy"] <= 1 for h in history)
    assert all(history[i + 1]["garbage_size"] >= history[i]["garbage_size"] for i in range(2))
    assert all(h["selected"] <= 20 for h in history)
    model, info = load_classifier(ood_run / "classifier")
    assert model.n_classes == 11 and info["card"]["garbage_index"] == 10


def test_evaluation_on_noise(ood_run: Path, tmp_path: Path) -> None:
    result = run_ood_evaluation(ood_run, ["uniform", "gaussian"], tmp_path / "eval", n=64, threads=1, device="cpu")
    assert set(result.metrics) == {"uniform", "gaussian"}
    for per_set in result.metrics.values():
        assert set(per_set) == {"garbage", "ue", "msp", "max-logit", "energy", "mahalanobis"}
        assert all(0.0 <= m["AUROC"] <= 1.0 for m in per_set.values())
    assert all(0.0 <= s <= 1.0 for s in result.garbage_share.values()) and 0 <= result.in_accuracy <= 1
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["garbage_share"] == result.garbage_share
    for name in ("hist_uniform.png", "roc_uniform.png", "hist_gaussian.png", "roc_gaussian.png", "card.json"):
        assert (tmp_path / "eval" / name).is_file(), name
    # The post-hoc baselines score the plain model (same retraining, no garbage class), not the start.
    plain, _ = load_classifier(ood_run / "plain")
    data = load_dataset("digits")
    with torch.no_grad():
        plain_acc = float((plain(data.x_test).argmax(1) == data.y_test).float().mean())
    assert result.base_accuracy == pytest.approx(plain_acc)
    # The flagging threshold is the 95th percentile of the garbage probability on the run's validation split.
    from netinvert.apps.ood import make_detector

    final, _ = load_classifier(ood_run / "classifier")
    _, va = split_validation(len(data.x_train), 0.1, 0)
    val_scores = make_detector("garbage", final).predict(data.x_train[va])
    assert result.flag_threshold == pytest.approx(float(torch.quantile(val_scores.double(), 0.95)), rel=1e-6)
    from netinvert.apps.ood import load_ood_set

    uniform = load_ood_set("uniform", (1, 8, 8), 64, seed=0)  # the first set, drawn with seed + 0
    flagged = float((make_detector("garbage", final).predict(uniform) > result.flag_threshold).float().mean())
    assert result.flagged_share["uniform"] == pytest.approx(flagged)
    assert 0 <= result.in_flagged_share <= 1 and set(result.flagged_share) == {"uniform", "gaussian"}


@pytest.mark.skipif(not dataset_status("fashion-mnist").available, reason="Fashion-MNIST files are not installed here")
def test_evaluation_on_fashion_8x8(ood_run: Path) -> None:
    result = run_ood_evaluation(ood_run, ["fashion-mnist"], n=200, threads=1, device="cpu")
    assert all(0.0 <= m["AUROC"] <= 1.0 for m in result.metrics["fashion-mnist"].values())
    assert 0.0 <= result.garbage_share["fashion-mnist"] <= 1.0


def test_refusals_before_work(ood_run: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="Unknown OOD set 'omniglot'"):
        run_ood_evaluation(ood_run, ["uniform", "omniglot"], tmp_path / "e")
    with pytest.raises(ValueError, match="OOD set 'held-out' is the classes a run was not trained on"):
        run_ood_evaluation(ood_run, ["held-out"], tmp_path / "e")
    with pytest.raises(ValueError, match="'classes' parameter must be distinct ints"):
        run_ood(OODRunConfig(**{**TINY, "classes": (0, 0, 1)}), tmp_path / "r")
    with pytest.raises(ValueError, match="classes=\\[0, 1\\] needs dataset and model"):
        run_ood(OODRunConfig(classifier=ood_run / "base", classes=(0, 1)), tmp_path / "r")
    with pytest.raises(ValueError, match="'rounds' parameter of OODRunConfig"):
        run_ood(OODRunConfig(**{**TINY, "rounds": 0}), tmp_path / "r")
    with pytest.raises(ValueError, match="'selection' parameter"):
        run_ood(OODRunConfig(**{**TINY, "selection": "best"}), tmp_path / "r")
    with pytest.raises(ValueError, match="exactly one starting point"):
        run_ood(OODRunConfig(classifier=ood_run / "base", dataset="digits", model="mlp"), tmp_path / "r")
    with pytest.raises(ValueError, match="overlaps the input"):
        run_ood(OODRunConfig(classifier=ood_run / "base", rounds=1, steps=2), ood_run / "base")
    with pytest.raises(ValueError, match="overlaps the input"):
        run_ood_evaluation(ood_run, ["uniform"], ood_run)
    with pytest.raises(ValueError, match="'accuracy_budget' parameter of run_ood_evaluation must be a float in"):
        run_ood_evaluation(ood_run, ["uniform"], tmp_path / "e", accuracy_budget=-0.01)
    with pytest.raises(ValueError, match="'accuracy_budget' parameter of OODRunConfig must be a float in"):
        run_ood(OODRunConfig(**{**TINY, "accuracy_budget": float("nan")}), tmp_path / "r")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(RunExistsError):
        run_ood(OODRunConfig(**TINY), tmp_path / "full")
    assert not (tmp_path / "r").exists() and not (tmp_path / "e").exists()
    assert "robust-disagree" in list_selections()


def test_cli_evaluate_and_refusal(ood_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ood", "evaluate", "--classifier", str(ood_run), "--ood", "uniform", "-n", "32", "--threads", "1",
                 "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert 0 <= printed["metrics"]["uniform"]["garbage"]["AUROC"] <= 1
    assert main(["ood", "train", "--classifier", str(ood_run / "base"), "--rounds", "0", "--out", str(tmp_path / "o")]) == 2
    assert "rounds" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["ood", "evaluate", "--classifier", str(ood_run), "--ood", "uniform", "--accuracy-budget", "nan"]) == 2
    assert "accuracy_budget" in capsys.readouterr().err


def test_cli_train_from_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["ood", "train", "--dataset", "digits", "--model", "mlp", "--base-epochs", "1", "--rounds", "1",
                 "--steps", "2", "-n", "10", "--selection", "all", "--noise-uniform", "8", "--noise-gaussian", "8",
                 "--epochs-per-round", "1", "--out", str(out), "--threads", "1", "--device", "cpu", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_classes"] == 11 and printed["garbage_size"] == 26  # 16 noise + 10 inverted ("all")
    assert (out / "rounds" / "round_01.png").is_file()


def test_cli_held_out_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "six"
    assert main(["ood", "train", "--dataset", "digits", "--model", "cnn", "--model-param", "channels=[4]",
                 "--model-param", "hidden=8", "--classes", "0,1,2,3,4,5", "--base-epochs", "1", "--rounds", "1",
                 "--steps", "2", "-n", "6", "--selection", "all", "--noise-uniform", "8", "--noise-gaussian", "8",
                 "--epochs-per-round", "1", "--out", str(out), "--threads", "1", "--device", "cpu", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_classes"] == 7  # six kept classes + garbage
    card = json.loads((out / "card.json").read_text())
    assert card["classes"] == [0, 1, 2, 3, 4, 5] and card["class_names"][-1] == "garbage"
    assert card["config"]["model_params"] == {"channels": [4], "hidden": 8}
    model, _ = load_classifier(out / "classifier")
    assert model.n_classes == 7
    assert main(["ood", "evaluate", "--classifier", str(out), "--ood", "held-out", "--threads", "1", "--device", "cpu",
                 "--out", str(tmp_path / "eval")]) == 0
    printed = json.loads(capsys.readouterr().out)
    data = load_dataset("digits")
    kept = data.select_classes([0, 1, 2, 3, 4, 5])
    with torch.no_grad():
        acc = float((model(kept.x_test).argmax(1) == kept.y_test).float().mean())
    assert printed["garbage_bias"] == 0.0  # the default 0.005 of 86 validation images allows none
    assert printed["in_accuracy"] == pytest.approx(acc)  # measured on the six kept classes only
    assert set(printed["metrics"]["held-out"]) == {"garbage", "ue", "msp", "max-logit", "energy", "mahalanobis"}
    assert (tmp_path / "eval" / "roc_held-out.png").is_file()


def test_a_folder_of_images_is_an_ood_set(ood_run: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    folder = tmp_path / "my photos"
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (folder / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / cls / f"{i}.png")
    result = run_ood_evaluation(ood_run, [str(folder)], tmp_path / "eval", threads=1, device="cpu")
    assert set(result.metrics) == {str(folder)}
    # Random colour photos converted to 8x8 grey: the garbage-class model (seeded with noise) flags them.
    assert result.metrics[str(folder)]["garbage"]["AUROC"] > 0.9
    assert (tmp_path / "eval" / "roc_my_photos.png").is_file() and (tmp_path / "eval" / "hist_my_photos.png").is_file()
    (tmp_path / "nothing" / "none").mkdir(parents=True)
    with pytest.raises(ValueError, match="OOD set '.*nothing'.*holds no .png"):
        run_ood_evaluation(ood_run, [str(tmp_path / "nothing")], threads=1, device="cpu")


def _validation_logits(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The final model's logits on the run's validation split (10% of digits' training split, seed 0) and its labels."""
    data = load_dataset("digits")
    _, va = split_validation(len(data.x_train), 0.1, 0)
    final, _ = load_classifier(run / "classifier")
    return predict_logits(final, data.x_train[va]), data.y_train[va]


def test_the_operating_point_respects_the_budget_on_validation(ood_run: Path) -> None:
    card = json.loads((ood_run / "card.json").read_text())
    bias = card["garbage_bias"]
    assert card["accuracy_budget"] == BUDGET and bias > 0
    logits, y = _validation_logits(ood_run)
    assert bias == calibrate_garbage_bias(logits, y, BUDGET)
    right_plain, right_biased = garbage_argmax(logits) == y, garbage_argmax(logits, bias) == y
    assert int((right_plain & ~right_biased).sum()) <= math.floor(BUDGET * len(y)) == 7  # exact, in images
    assert card["val_accuracy"] - card["val_accuracy_at_bias"] <= BUDGET
    assert card["val_accuracy_at_bias"] == float(right_biased.float().mean())

    result = run_ood_evaluation(ood_run, ["uniform", "gaussian"], n=64, threads=1, device="cpu")
    assert (result.garbage_bias, result.garbage_bias_source, result.accuracy_budget) == (bias, "stored", BUDGET)
    assert result.val_accuracy == card["val_accuracy_at_bias"] and result.val_accuracy_no_bias == card["val_accuracy"]
    data = load_dataset("digits")
    test_logits = predict_logits(load_classifier(ood_run / "classifier")[0], data.x_test)
    assert result.in_accuracy == float((garbage_argmax(test_logits, bias) == data.y_test).float().mean())
    assert result.in_accuracy_no_bias == float((garbage_argmax(test_logits) == data.y_test).float().mean())
    assert result.in_garbage_share >= result.in_garbage_share_no_bias
    assert all(result.garbage_share[s] >= result.garbage_share_no_bias[s] for s in ("uniform", "gaussian"))

    off = run_ood_evaluation(ood_run, ["uniform"], n=64, accuracy_budget=0, threads=1, device="cpu")
    assert (off.garbage_bias, off.garbage_bias_source) == (0.0, "calibrated")
    assert off.in_accuracy == off.in_accuracy_no_bias and off.garbage_share == off.garbage_share_no_bias
    biases = [calibrate_garbage_bias(logits, y, b) for b in (0.0, 0.01, BUDGET, 0.1, 0.3)]
    assert biases == sorted(biases) and biases[2] == bias


def test_the_bias_is_chosen_on_validation_only(ood_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Swap the test split for noise with shuffled labels: the training, the bias and its recalibration must not notice.
    real = load_dataset("digits")
    other = dataclasses.replace(real, x_test=torch.rand(real.x_test.shape, generator=torch.Generator().manual_seed(1)),
                                y_test=real.y_test.flip(0))
    monkeypatch.setattr("netinvert.apps.ood._pipeline.load_dataset", lambda name, root=None: other)
    result = run_ood(OODRunConfig(**TINY, accuracy_budget=BUDGET), tmp_path / "other", progress=False)
    card, ref = (json.loads((run / "card.json").read_text()) for run in (tmp_path / "other", ood_run))
    assert card["test_accuracy"] != ref["test_accuracy"] and card["test_accuracy_at_bias"] != ref["test_accuracy_at_bias"]
    assert result.garbage_bias == card["garbage_bias"] == ref["garbage_bias"]
    recalibrated = run_ood_evaluation(tmp_path / "other", ["uniform"], n=32, accuracy_budget=BUDGET, threads=1,
                                      device="cpu")
    assert recalibrated.garbage_bias == ref["garbage_bias"]


def test_a_run_without_a_stored_bias_is_evaluated_at_zero_and_says_so(ood_run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(ood_run, old)
    card = json.loads((old / "card.json").read_text())
    for key in ("garbage_bias", "accuracy_budget", "val_accuracy_at_bias", "test_accuracy_at_bias"):
        del card[key]
    del card["config"]["accuracy_budget"]
    (old / "card.json").write_text(json.dumps(card))
    with pytest.warns(UserWarning, match="stores no garbage_bias .* evaluated at b = 0"):
        plain = run_ood_evaluation(old, ["uniform"], n=32, threads=1, device="cpu")
    assert (plain.garbage_bias, plain.garbage_bias_source, plain.accuracy_budget) == (0.0, "none", None)
    assert plain.in_accuracy == plain.in_accuracy_no_bias and plain.garbage_share == plain.garbage_share_no_bias
    # ... and an older run can be calibrated from its own validation split without retraining.
    calibrated = run_ood_evaluation(old, ["uniform"], n=32, accuracy_budget=BUDGET, threads=1, device="cpu")
    assert calibrated.garbage_bias == json.loads((ood_run / "card.json").read_text())["garbage_bias"]
