"""The garbage class (``BNNRunConfig(garbage_rounds=...)``, :func:`netinvert.bnn.train_with_garbage`) on
digits pooled 2x2 (16 inputs, so every input can be enumerated) and tiny nets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bnn_helpers import all_inputs
from netinvert.bnn import (
    BNN,
    BNNRunConfig,
    GarbageConfig,
    InputBinarizer,
    count_preimages,
    load_bnn_run,
    run_bnn_query,
    run_bnn_training,
    train_bnn,
    train_with_garbage,
)
from netinvert.cli import main

SMALL = dict(dataset="digits", pool=2, threshold=0.3, hidden=(8,), epochs=4, threads=1)


@pytest.fixture(scope="module")
def garbage_run(tmp_path_factory):
    """A run written by ``netinvert bnn train --garbage-rounds 1`` (16 inputs, fan-in 4, 11 classes)."""
    out = tmp_path_factory.mktemp("garbage") / "run"
    rc = main(["bnn", "train", "--dataset", "digits", "--pool", "2", "--threshold", "0.3", "--hidden", "8",
               "--fan-in", "4", "--epochs", "4", "--garbage-rounds", "1", "--garbage-samples", "300",
               "--garbage-preimages", "3", "--garbage-seconds", "0.5", "--threads", "1", "--out", str(out)])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def digits_bits(digits):
    b = InputBinarizer(pool=2, threshold=0.3)
    return b(digits.x_train), digits.y_train, b(digits.x_test), digits.y_test


def test_cli_run_records_history_and_exports_exactly(garbage_run):
    card = json.loads((garbage_run / "card.json").read_text())
    run = load_bnn_run(garbage_run)
    assert run.net.n_classes == 11 and run.model.n_classes == 11
    assert card["export_agreement"] == "360/360"  # the pipeline checked every test input against PyTorch
    g = card["garbage"]
    assert g["label"] == 10 and g["name"] == "garbage" and g["config"]["rounds"] == 1
    assert [h["round"] for h in g["history"]] == [0, 1]
    for h in g["history"]:
        assert {"garbage_size", "validation_accuracy", "test_accuracy", "uniform_to_garbage"} <= set(h)
    assert g["history"][1]["garbage_size"] >= g["history"][0]["garbage_size"]
    metrics = json.loads((garbage_run / "metrics.json").read_text())
    assert metrics["garbage"]["history"] == g["history"]


def test_queries_work_on_the_extra_class(garbage_run):
    run = load_bnn_run(garbage_run)
    assert run_bnn_query("infer", run, {"n": 30}).result["agreement"] == 1.0
    inv = run_bnn_query("invert", run, {"label": 10, "seconds": 5.0}).result
    assert inv["status"] == "sat" and run.net.predict(np.array([inv["preimage"]]))[0] == 10
    assert run_bnn_query("robustness", run, {"index": 0, "seconds": 5.0}).result["certified"]
    sample = run_bnn_query("sample", run, {"label": 10, "n": 3, "seconds": 20.0}).result["results"][0]
    assert sample["n_samples"] == 3 and all(run.net.predict(np.array(sample["samples"])) == 10)


def test_exact_counts_with_garbage_sum_to_all_inputs(garbage_run):
    """DP counts of all 11 labels equal brute force over the 2^16 inputs and sum to 2^16."""
    net = load_bnn_run(garbage_run).net
    r = count_preimages(net, 10, method="dp")
    brute = np.bincount(net.predict(all_inputs(16)), minlength=11)
    assert list(r.all_labels) == brute.tolist()
    assert sum(r.all_labels) == 2**16 and r.count == brute[10]


def test_zero_rounds_is_the_plain_run(tmp_path):
    """garbage_rounds=0 trains exactly the net the plain recipe trains (10 classes, same weights)."""
    r = run_bnn_training(BNNRunConfig(**SMALL), tmp_path / "run", progress=False)
    from netinvert.data import load_dataset

    data = load_dataset("digits")
    b = InputBinarizer(pool=2, threshold=0.3)
    torch.manual_seed(0)
    model = BNN(16, (8,), 10)
    train_bnn(model, b(data.x_train), data.y_train, BNNRunConfig(**SMALL).train_config())
    run = load_bnn_run(r.run_dir)
    assert run.net.n_classes == 10 and "garbage" not in run.card
    for k, v in model.state_dict().items():
        assert torch.equal(v, run.model.state_dict()[k]), k


def test_rounds_send_more_uniform_inputs_to_garbage(digits_bits):
    x, y, xt, yt = digits_bits
    torch.manual_seed(0)
    model = BNN(16, (8,), 11)
    cfg = BNNRunConfig(**SMALL).train_config()
    res = train_with_garbage(model, x, y, cfg, GarbageConfig(rounds=2, samples=300, preimages=3, seconds=0.5),
                             test=(xt, yt), progress=False)
    assert all(h["sat_queries"] == 30 for h in res.history[1:]) and res.history[-1]["uniform_to_garbage"] > 0.5
    # the plain net labels every uniform input with a real class; this one sends most to garbage,
    # and has learnt most of the garbage set it was fed (SAT preimages included)
    u = np.random.default_rng(5).integers(0, 2, (5000, 16))
    assert (model.predict(torch.as_tensor(u)) == 10).float().mean() > 0.5
    assert (model.predict(torch.as_tensor(res.garbage)) == 10).float().mean() > 0.5


def test_noise_ablation_asks_no_sat_query(digits_bits):
    x, y, _, _ = digits_bits
    torch.manual_seed(0)
    model = BNN(16, (8,), 11)
    res = train_with_garbage(model, x, y, BNNRunConfig(**SMALL).train_config(),
                             GarbageConfig(rounds=2, source="noise", samples=200, preimages=3), progress=False)
    assert [h["sat_queries"] for h in res.history] == [0, 0, 0]
    assert all(h["source_candidates"] == 30 for h in res.history[1:])


@pytest.mark.parametrize("kw, match", [
    ({"garbage_rounds": -1}, "The 'garbage_rounds' parameter of BNNRunConfig must be an int in \\[0, inf\\)"),
    ({"garbage_source": "magic"}, "The 'garbage_source' parameter of BNNRunConfig must be one of noise, sat"),
    ({"garbage_samples": 0}, "'garbage_samples' parameter"),
    ({"garbage_seconds": 0.0}, "'garbage_seconds' parameter"),
])
def test_bad_values_are_refused_before_work(kw, match):
    with pytest.raises(ValueError, match=match):
        BNNRunConfig(**SMALL, **kw)


def test_bad_cli_source_is_refused_before_work(tmp_path, capsys):
    rc = main(["bnn", "train", "--garbage-rounds", "1", "--garbage-source", "magic", "--out", str(tmp_path / "r")])
    assert rc == 2 and "'garbage_source' parameter of BNNRunConfig" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_model_must_have_the_extra_class(digits_bits):
    x, y, _, _ = digits_bits
    with pytest.raises(ValueError, match="one class more"):
        train_with_garbage(BNN(16, (8,), 10), x, y, BNNRunConfig(**SMALL).train_config(), GarbageConfig(rounds=1))
    with pytest.raises(ValueError, match="'rounds' parameter of GarbageConfig"):
        GarbageConfig(rounds=-2)
