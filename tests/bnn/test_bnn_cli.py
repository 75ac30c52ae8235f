"""``netinvert bnn ...`` smoke runs, in-process as the console script runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netinvert.bnn import load_bnn_run
from netinvert.cli import main


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def bnn_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("bnn_run")
    assert main(["bnn", "train", "--dataset", "digits", "--out", str(run), "--epochs", "2", "--hidden", "12"]) == 0
    return run


def test_train_writes_exported_net_checked_against_torch(bnn_run, capsys):
    model, binarizer, net, card = load_bnn_run(bnn_run)
    assert card["export_agreement"] == "360/360" and card["dataset"] == "digits"
    assert card["binarizer"]["rule"] == "bit = pixel > 0.5"
    assert net.n_inputs == 64 and net.n_classes == 10 and card["test_accuracy"] > 0.3


def test_invert_count_infer_robustness_encode(bnn_run, capsys):
    rc, out, _ = run_cli(capsys, "bnn", "invert", bnn_run, "--label", 3, "--time-s", 20)
    d = json.loads(out)
    assert rc == 0 and d["status"] in ("sat", "unsat", "unknown") and "seconds" in d
    if d["status"] == "sat":
        assert len(d["preimage"]) == 64
    assert json.loads((bnn_run / "invert.json").read_text())["status"] == d["status"]

    rc, out, _ = run_cli(capsys, "bnn", "count", bnn_run, "--label", 3, "--approx", "--time-s", 1)
    d = json.loads(out)
    assert rc == 0 and {"label", "count", "exact", "seconds"} <= set(d) and d["exact"] is False and d["label"] == 3

    rc, out, _ = run_cli(capsys, "bnn", "count", bnn_run, "--label", 3, "--sampled", "--samples", 20000)
    d = json.loads(out)
    _, _, net, _ = load_bnn_run(bnn_run)
    rng = np.random.default_rng(5)  # an independent sample of the same space agrees within the interval, loosely
    share = float((net.predict(rng.integers(0, 2, (20000, 64), dtype=np.int8)) == 3).mean())
    assert rc == 0 and d["method"] == "sampled" and d["exact"] is False and d["n_samples"] == 20000
    assert d["low"] <= d["share"] <= d["high"] and abs(share - d["share"]) < 0.02
    assert isinstance(d["count"], int) and abs(d["count"] / 2**64 - d["share"]) < 1e-12

    rc, out, _ = run_cli(capsys, "bnn", "infer", bnn_run, "--n", 20, "--encoding", "native")
    assert rc == 0 and json.loads(out)["agreement"] == 1.0

    rc, out, _ = run_cli(capsys, "bnn", "robustness", bnn_run, "--index", 0, "--max-k", 1, "--encoding", "native")
    d = json.loads(out)
    assert rc == 0 and d["k"] in (1, None)

    rc, out, _ = run_cli(capsys, "bnn", "encode", bnn_run, "--encoding", "sortnet", "--label", 1)
    d = json.loads(out)
    assert rc == 0 and (bnn_run / "encoding-sortnet-label1.cnf").read_text().startswith("c netinvert")

    rc, out, _ = run_cli(capsys, "bnn", "enumerate", bnn_run, "--label", 1, "--limit", 2, "--time-s", 20)
    assert rc == 0 and json.loads(out)["n_found"] in (0, 1, 2)

    rc, out, _ = run_cli(capsys, "bnn", "sample", bnn_run, "--label", 1, "--n", 2, "--time-s", 3)
    r = json.loads(out)["results"][0]
    assert rc == 0 and r["label"] == 1 and len(r["marginals"]) == 64
    if r["n_samples"]:
        assert (bnn_run / "marginals_label1.png").is_file()


def test_user_errors_are_clean(bnn_run, capsys):
    rc, _, err = run_cli(capsys, "bnn", "invert", bnn_run, "--label", 3, "--encoding", "bogus")
    assert rc == 2 and "Valid names" in err
    rc, _, err = run_cli(capsys, "bnn", "count", bnn_run, "--label", 3, "--encoding", "native")
    assert rc == 2 and "clausal encoding" in err
    rc, _, err = run_cli(capsys, "bnn", "count", bnn_run, "--label", 10, "--sampled")
    assert rc == 2 and "--label must be in [0, 9]" in err


def test_invert_native_with_and_without_search_hint(bnn_run, capsys):
    """Both paths are exact; with the default local-search hint the answer comes without conflicts."""
    model, _, net, _ = load_bnn_run(bnn_run)
    label = int(net.predict(np.zeros((1, 64), dtype=np.int64)).item())  # the blank image is a preimage
    statuses = []
    for search in (1.0, 0.0):
        rc, out, _ = run_cli(capsys, "bnn", "invert", bnn_run, "--label", label, "--encoding", "native",
                             "--time-s", 5, "--search-s", search)
        d = json.loads(out)
        assert rc == 0 and d["status"] in ("sat", "unknown")
        if d["status"] == "sat":
            assert int(net.predict(np.array([d["preimage"]])).item()) == label
        statuses.append(d)
    assert statuses[0]["status"] == "sat" and statuses[0]["conflicts"] == 0


def test_fan_in_training_and_exact_dp_count(tmp_path, capsys):
    """`bnn train --fan-in` then `bnn count --dp`: exact counts of every label, equal to brute force over
    the inputs the first layer reads (the others cannot change a label: each doubles the count)."""
    import itertools

    run = tmp_path / "fan"
    assert main(["bnn", "train", "--dataset", "digits", "--out", str(run), "--epochs", "3", "--hidden", "6",
                 "--fan-in", "2"]) == 0
    capsys.readouterr()
    rc, out, _ = run_cli(capsys, "bnn", "count", run, "--label", 0, "--dp", "--no-progress")
    d = json.loads(out)
    _, _, net, card = load_bnn_run(run)
    assert card["model_params"]["fan_in"] == 2
    used = np.flatnonzero((net.layers[0][0] != 0).any(0))  # at most 6 x 2: brute force stays small
    x = np.zeros((2 ** len(used), 64), dtype=np.int8)
    x[:, used] = np.array(list(itertools.product((0, 1), repeat=len(used))), dtype=np.int8)
    brute = [int((net.predict(x) == k).sum()) << (64 - len(used)) for k in range(10)]
    assert rc == 0 and d["method"] == "dp" and d["exact"] is True and d["all_labels"] == brute
    assert d["count"] == brute[0] and sum(d["all_labels"]) == 2 ** 64
