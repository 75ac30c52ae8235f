"""The KKT reconstruction attack on a tiny case where it must succeed, its refusals, and the SGD training regime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from netinvert.apps.reconstruct import ReconstructConfig, kkt_reconstruct, run_reconstruction
from netinvert.apps.reconstruct._kkt import _margins, _smooth_relus
from netinvert.cli import main
from netinvert.models import TrainConfig, build_model, load_classifier_run
from netinvert.runs import load_weights, read_card

ARGS = ["--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def sgd_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 digits (one per class), full-batch SGD with weight decay to a stationary point: the attack's regime."""
    out = tmp_path_factory.mktemp("kkt") / "clf"
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--model-param", "hidden=[100,100]", "--model-param",
                 "dropout=0", "--subset", "10", "--subset-seed", "0", "--batch-size", "10", "--epochs", "2000",
                 "--optimizer", "sgd", "--eval-every", "500", "--lr", "0.05", "--weight-decay", "0.01", "--out", str(out), "--no-progress",
                 "--checkpoint-seconds", "600", *ARGS]) == 0
    return out


def test_sgd_and_weight_decay_are_recorded_in_the_run(sgd_classifier: Path) -> None:
    card = read_card(sgd_classifier)
    train = card["config"]["train"]
    assert train["optimizer"] == "sgd" and train["weight_decay"] == 0.01 and train["batch_size"] == 10
    accuracy = card["history"]["test_accuracy"]  # measured every 500 epochs only
    assert len(accuracy) == 2000 and sum(a is not None for a in accuracy) == 4 and accuracy[-1] == card["test_accuracy"]


def test_kkt_recovers_the_members_of_a_tiny_net_and_not_the_non_members(sgd_classifier: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    assert main(["reconstruct", "--classifier", str(sgd_classifier), "--method", "kkt", "--steps", "1000", "--out", str(out),
                 "--no-progress", *ARGS]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    report = metrics["membership"]
    # Measured: 7 of 10 members matched at SSIM >= 0.6 (5 at >= 0.7), no non-member; advantage +0.23 [0.15, 0.31].
    assert report["member_counts"][">=0.6"] >= 5, report
    assert report["non_member_counts"][">=0.6"] <= 1, report
    assert report["advantage_ci95"][0] > 0.05, report
    assert metrics["kkt_candidates"] == 20 and 0 < metrics["kkt_residual"] < 1
    candidates = load_weights(out / "candidates.safetensors")
    assert candidates["x"].shape == (20, 1, 8, 8) and bool((candidates["x"] >= 0).all() and (candidates["x"] <= 1).all())
    assert bool((candidates["lambdas"] > 0).all())
    assert read_card(out)["config"]["method"] == "kkt"


def test_kkt_on_a_random_classifier_recovers_nothing(sgd_classifier: Path) -> None:
    """The control: an untrained net of the same shape carries no training set to recover."""
    trained, _ = load_classifier_run(sgd_classifier)
    torch.manual_seed(3)
    random = build_model("mlp", input_shape=(1, 8, 8), n_classes=10, hidden=[100, 100], dropout=0.0).eval()
    from netinvert.apps.reconstruct import membership_report
    from netinvert.data import load_dataset
    from netinvert.models import load_members

    data = load_dataset("digits")
    m, nm = load_members(sgd_classifier)
    got = {}
    for name, model in (("trained", trained), ("random", random)):
        result = kkt_reconstruct(model, 20, steps=1000, seed=0)
        x, _ = result.top(10)
        got[name] = membership_report(x, data.x_train[m], data.x_train[nm], seed=0)[0].to_dict()
    assert got["random"]["member_counts"][">=0.6"] <= 1 < got["trained"]["member_counts"][">=0.6"]
    assert got["random"]["advantage"] < got["trained"]["advantage"] - 0.1


def test_margins_and_smoothing() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 4.0, 1.0]])
    assert torch.allclose(_margins(logits, torch.tensor([0, 2])), torch.tensor([0.5, -3.0]))
    model = build_model("mlp", input_shape=(1, 8, 8), n_classes=10, hidden=[16], dropout=0.0)
    smooth = _smooth_relus(model, 100.0)
    assert not any(isinstance(m, torch.nn.ReLU) for m in smooth.modules())
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())  # the original is untouched
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(smooth(x), model.eval()(x), atol=0.05)  # a steep softplus is close to the ReLU


def test_kkt_refuses_bad_arguments(sgd_classifier: Path, tmp_path: Path) -> None:
    model, _ = load_classifier_run(sgd_classifier)
    with pytest.raises(ValueError, match="needs a budget"):
        kkt_reconstruct(model, 4, steps=None)
    with pytest.raises(ValueError, match="'n_candidates' parameter of kkt_reconstruct"):
        kkt_reconstruct(model, 0)
    with pytest.raises(ValueError, match="'lr' parameter of kkt_reconstruct"):
        kkt_reconstruct(model, 4, lr=0)
    with pytest.raises(ValueError, match="'kkt_candidates' parameter of ReconstructConfig"):
        run_reconstruction(ReconstructConfig(classifier=sgd_classifier, method="kkt", kkt_candidates=0.5), tmp_path / "x")
    with pytest.raises(ValueError, match="'optimizer' parameter of TrainConfig"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="'weight_decay' parameter of TrainConfig"):
        TrainConfig(weight_decay=-1.0)
