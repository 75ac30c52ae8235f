"""run_training and run_evaluation: the classifier workflows keep the pipeline contract."""

from __future__ import annotations

import dataclasses
import json

import pytest

from netinvert.exceptions import RunExistsError, UnknownNameError
from netinvert.models import (
    ClassifierRunConfig,
    EvaluationResult,
    TrainConfig,
    TrainingResult,
    evaluate_classifier,
    load_classifier_run,
    run_evaluation,
    run_training,
)
from netinvert.runs import file_sha256

#: One epoch of a small MLP on digits: about a second.
CONFIG = ClassifierRunConfig(dataset="digits", model="mlp", model_params={"hidden": [16]},
                             train=TrainConfig(epochs=1, lr=3e-3), seed=0, device="cpu", threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    return run_training(CONFIG, tmp_path_factory.mktemp("pipeline") / "run", progress=False)


def _listing(path):
    return sorted((p.relative_to(path).as_posix(), p.read_bytes()) for p in path.rglob("*") if p.is_file())


def test_config_is_frozen_hashable_and_round_trips():
    assert hash(CONFIG) == hash(ClassifierRunConfig.from_dict(json.loads(json.dumps(CONFIG.to_dict()))))
    assert ClassifierRunConfig.from_dict(json.loads(json.dumps(CONFIG.to_dict()))) == CONFIG
    assert CONFIG.to_dict()["model_params"] == {"hidden": [16]}
    assert CONFIG.train.seed == CONFIG.seed and CONFIG.train.device == "cpu"
    with pytest.raises(AttributeError):
        CONFIG.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subset": 0}, "'subset' parameter"),
        ({"device": "tpu"}, "'device' parameter"),
        ({"threads": 0}, "'threads' parameter"),
        ({"seed": 1, "train": TrainConfig(seed=2)}, "set seed on ClassifierRunConfig only"),
        ({"model_params": 3}, "'model_params' parameter"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassifierRunConfig(**kwargs)


def test_run_folder_card_and_reload(trained, digits):
    run = trained.run_dir
    assert sorted(p.name for p in run.iterdir()) == ["card.json", "metrics.json", "weights.safetensors"]
    card = json.loads((run / "card.json").read_text())
    assert ClassifierRunConfig.from_dict(card["config"]) == CONFIG
    assert card["seed"] == 0 and card["device"] == "cpu" and card["threads"] == 1
    assert card["weights_sha256"] == trained.weights_sha256 == file_sha256(run / "weights.safetensors")
    assert "versions" in card and card["test_accuracy"] == trained.test_accuracy
    model, _ = load_classifier_run(run)
    assert evaluate_classifier(model, digits.x_test, digits.y_test) == trained.test_accuracy
    assert trained.to_dict()["run_dir"] == str(run) and trained.n_test == len(digits.x_test)


def test_same_config_same_weights(trained, tmp_path):
    again = run_training(CONFIG, tmp_path / "again", progress=False)
    assert again.weights_sha256 == trained.weights_sha256


def test_subset_trains_on_fewer_images(tmp_path):
    result = run_training(dataclasses.replace(CONFIG, subset=100), tmp_path / "r", progress=False)
    card = json.loads((result.run_dir / "card.json").read_text())
    assert card["n_train"] == 100 and card["n_test"] == 360


def test_full_out_refused_without_force_and_left_alone(trained, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(RunExistsError, match="--force"):
        run_training(CONFIG, out, progress=False)
    assert _listing(out) == [("keep.txt", b"keep")]


def test_force_replaces_only_after_completion(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    import netinvert.models._pipeline as pipeline

    def boom(*args, **kwargs):
        assert (out / "keep.txt").is_file()  # still there while training runs
        raise RuntimeError("interrupted")

    monkeypatch.setattr(pipeline, "_fit", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_training(CONFIG, out, force=True, progress=False)
    assert _listing(out) == [("keep.txt", b"keep")]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder or lock left behind
    monkeypatch.undo()
    run_training(CONFIG, out, force=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "metrics.json", "weights.safetensors"]


def test_bad_names_and_out_refused_before_loading_data(tmp_path, monkeypatch):
    import netinvert.models._pipeline as pipeline

    def no_data(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the config and --out were checked")

    monkeypatch.setattr(pipeline, "load_dataset", no_data)
    with pytest.raises(UnknownNameError, match="Valid names"):
        run_training(ClassifierRunConfig(model="no-such-net"), tmp_path / "r")
    with pytest.raises(ValueError, match="unknown depth; valid: dropout, hidden"):
        run_training(ClassifierRunConfig(model="mlp", model_params={"depth": 3}), tmp_path / "r")
    with pytest.raises(ValueError, match="come from the dataset"):
        run_training(ClassifierRunConfig(model="mlp", model_params={"n_classes": 3}), tmp_path / "r")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="is a file"):
        run_training(CONFIG, tmp_path / "file" / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_evaluation_reads_and_never_writes_its_input(trained, tmp_path):
    before = _listing(trained.run_dir)
    result = run_evaluation(trained.run_dir, device="cpu")
    assert isinstance(result, EvaluationResult) and result.run_dir is None
    assert result.test_accuracy == trained.test_accuracy and result.weights_sha256 == trained.weights_sha256
    assert result.format == "run" and result.dataset == "digits" and result.model == "mlp"

    written = run_evaluation(trained.run_dir, device="cpu", out=tmp_path / "ev", threads=1)
    assert sorted(p.name for p in written.run_dir.iterdir()) == ["card.json", "metrics.json"]
    card = json.loads((written.run_dir / "card.json").read_text())
    assert card["kind"] == "evaluation" and card["threads"] == 1 and card["test_accuracy"] == trained.test_accuracy
    assert list(card["input_weights_sha256"].values()) == [trained.weights_sha256]

    for inside in (trained.run_dir, trained.run_dir / "sub", trained.run_dir.parent):
        with pytest.raises(ValueError, match="never writes into"):
            run_evaluation(trained.run_dir, device="cpu", out=inside, force=True)
    assert _listing(trained.run_dir) == before


def test_evaluation_of_a_weights_file(trained):
    result = run_evaluation(trained.run_dir / "weights.safetensors", device="cpu")
    assert result.test_accuracy == trained.test_accuracy and result.weights_sha256 == trained.weights_sha256
