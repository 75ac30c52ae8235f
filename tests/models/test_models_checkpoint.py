"""Run folders of classifiers: safetensors weights + JSON card, and every way they can be broken."""

from __future__ import annotations

import json

import pytest
import torch

from netinvert.exceptions import RunFormatError, UnsafeCheckpointError
from netinvert.models import build_model, load_classifier, load_classifier_run, predict, save_classifier


def test_round_trip_gives_identical_logits(digits, digits_cnn, digits_cnn_run):
    model, card = load_classifier_run(digits_cnn_run)
    assert not model.training
    assert type(model) is type(digits_cnn)
    x = digits.x_test
    with torch.no_grad():
        torch.testing.assert_close(model(x), digits_cnn(x), rtol=0, atol=0)
        torch.testing.assert_close(model.features(x), digits_cnn.features(x), rtol=0, atol=0)
    assert torch.equal(predict(model, x), predict(digits_cnn, x))
    assert card["model"] == "cnn" and card["dataset"] == "digits"
    assert card["model_params"] == digits_cnn.get_params()
    assert "torch" in card["versions"]


def test_load_classifier_accepts_the_folder_and_its_weights_file(digits, digits_cnn, digits_cnn_run):
    for source in (digits_cnn_run, digits_cnn_run / "weights.safetensors"):
        model, info = load_classifier(source)
        assert info["format"] == "run" and info["dataset"] == "digits"
        assert info["input_shape"] == [1, 8, 8] and info["n_classes"] == 10
        assert torch.equal(predict(model, digits.x_test), predict(digits_cnn, digits.x_test))


def test_run_folder_holds_no_pickle(digits_cnn_run):
    assert sorted(p.name for p in digits_cnn_run.iterdir()) == ["card.json", "weights.safetensors"]
    assert (digits_cnn_run / "weights.safetensors").read_bytes()[8:9] == b"{"  # safetensors JSON header


@pytest.fixture
def run_copy(digits_cnn, tmp_path):
    run = tmp_path / "run"
    save_classifier(digits_cnn, run, {"dataset": "digits"})
    return run


def test_missing_card_names_the_file(run_copy):
    (run_copy / "card.json").unlink()
    with pytest.raises(FileNotFoundError, match="card.json"):
        load_classifier_run(run_copy)


def test_missing_weights_names_the_file(run_copy):
    (run_copy / "weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="weights.safetensors"):
        load_classifier_run(run_copy)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_classifier_run(tmp_path / "nowhere")


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_truncated_weights_are_refused(run_copy, cut):
    path = run_copy / "weights.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(UnsafeCheckpointError, match="weights.safetensors"):
        load_classifier_run(run_copy)


def test_garbage_weights_are_refused(run_copy):
    (run_copy / "weights.safetensors").write_bytes(b"\x00" * 7 + b"not a checkpoint" * 10)
    with pytest.raises(UnsafeCheckpointError, match="not a readable safetensors"):
        load_classifier_run(run_copy)


def test_weights_not_matching_the_card_architecture(run_copy):
    card = json.loads((run_copy / "card.json").read_text())
    card["model_params"]["hidden"] = 65  # one more hidden unit than the weights have
    (run_copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(RunFormatError, match="does not match the architecture"):
        load_classifier_run(run_copy)


def test_weights_of_another_model(run_copy):
    other = build_model("mlp", input_shape=(1, 8, 8), n_classes=10)
    save_classifier(other, run_copy.parent / "mlp")
    (run_copy / "weights.safetensors").write_bytes((run_copy.parent / "mlp" / "weights.safetensors").read_bytes())
    # the card's sha256 notices the swap first
    with pytest.raises(UnsafeCheckpointError, match=r"weights.safetensors changed since card.json was written"):
        load_classifier_run(run_copy)
    # a card without one (older runs) still notices that the architecture differs
    card = json.loads((run_copy / "card.json").read_text())
    del card["weights_sha256"]
    (run_copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(RunFormatError, match="does not match"):
        load_classifier_run(run_copy)


def test_card_with_unknown_model_or_bad_params(run_copy):
    card = json.loads((run_copy / "card.json").read_text())
    (run_copy / "card.json").write_text(json.dumps(card | {"model": "vgg"}))
    with pytest.raises(RunFormatError, match="names model 'vgg', which is not registered here. Valid names: .*cnn"):
        load_classifier_run(run_copy)
    (run_copy / "card.json").write_text(json.dumps(card | {"model_params": card["model_params"] | {"depth": 3}}))
    with pytest.raises(RunFormatError, match="model_params"):
        load_classifier_run(run_copy)
    (run_copy / "card.json").write_text("{not json")
    with pytest.raises(RunFormatError, match="not valid JSON"):
        load_classifier_run(run_copy)


def test_unregistered_model_cannot_be_saved(tmp_path):
    from netinvert.models import Classifier

    class Custom(Classifier):
        pass

    with pytest.raises(RunFormatError, match="register_model"):
        save_classifier(Custom(input_shape=(1, 8, 8), n_classes=10), tmp_path)


# ----------------------------------------------------------------------------- fingerprints and card paths


def test_weights_sha256_is_reported_and_can_be_required(digits_cnn_run, tmp_path):
    from netinvert.runs import file_sha256

    sha = file_sha256(digits_cnn_run / "weights.safetensors")
    model, info = load_classifier(digits_cnn_run, expected_sha256=sha.upper())  # hex case does not matter
    assert info["weights_sha256"] == sha == info["card"]["weights_sha256"]
    _, card = load_classifier_run(digits_cnn_run, expected_sha256=sha)
    other = save_classifier(build_model("mlp", input_shape=(1, 8, 8), n_classes=10), tmp_path / "other")
    with pytest.raises(UnsafeCheckpointError, match=f"is not the classifier expected: .* recorded {sha}"):
        load_classifier(other, expected_sha256=sha)


@pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")
def test_foreign_files_report_their_own_sha256(tmp_path):
    from netinvert.runs import file_sha256

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    path = tmp_path / "net.pt"
    torch.jit.script(net).save(str(path))
    _, info = load_classifier(path, input_shape=(1, 8, 8), n_classes=10, expected_sha256=file_sha256(path))
    assert info["weights_sha256"] == file_sha256(path)


def test_recorded_paths_are_relative_to_the_run_folder(tmp_path, monkeypatch):
    from netinvert.models import path_for_card, resolve_recorded_path

    runs = tmp_path / "runs"
    recorded = path_for_card(runs / "inv", runs / "clf")
    assert recorded == "../clf"
    monkeypatch.chdir(tmp_path)  # the current directory plays no part
    assert resolve_recorded_path(runs / "inv", recorded) == runs / "clf"
    assert resolve_recorded_path("runs/inv", recorded) == runs / "clf"
    assert str(resolve_recorded_path(runs / "inv", "/abs/clf")) == "/abs/clf"
    for bad in ("", None, 3):
        with pytest.raises(RunFormatError, match="as a path; expected a non-empty string"):
            resolve_recorded_path(runs / "inv", bad)
