"""``netinvert bnn ...`` in-process, as the console script runs it, on nets small enough for brute force.

Most tests read a hand-set 16-input run (digits pooled 2x2, so the queries that read test images
work) whose label 2 can never win (its head row equals label 0's, and ties go to the lower label):
every answer is checked against a forward pass over all 2^16 inputs.
"""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
import torch

from bnn_helpers import all_inputs, random_bnn
from netinvert.bnn import InputBinarizer, export_bnn, load_bnn_run, save_bnn_run
from netinvert.cli import main
from netinvert.runs import file_sha256


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 and out.strip() else None), err


def _snapshot(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory):
    """(run folder, labels of all 2^16 inputs): 16 inputs, 6 hidden, 3 labels, label 2 impossible."""
    model = random_bnn(16, (6,), 3, seed=11)
    with torch.no_grad():
        model.head.weight[2] = model.head.weight[0]
    net = export_bnn(model)
    run = tmp_path_factory.mktemp("hand") / "run"
    run.mkdir()
    save_bnn_run(run, model, InputBinarizer(pool=2, threshold=0.5), net,
                 {"dataset": "digits", "data_root": None, "input_image_shape": [1, 8, 8]})
    labels = net.predict(all_inputs(16))
    assert (labels == 0).any() and (labels == 1).any() and not (labels == 2).any()
    return run, labels


def _brute_min_flips(labels, x):
    """Least Hamming distance from ``x`` to an input with another label (over all 2^16 inputs)."""
    idx = int("".join(map(str, x)), 2)
    xs = all_inputs(16)
    dist = (xs != np.asarray(x)[None]).sum(1)
    return int(dist[labels != labels[idx]].min())


def test_train_writes_a_complete_verified_run(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ("bnn", "train", "--dataset", "digits", "--pool", 2, "--hidden", 6, "--epochs", 1, "--out", out)
    rc, d, _ = run_cli(capsys, *argv)
    run = load_bnn_run(out)
    assert rc == 0 and d["export_agreement"] == "360/360" and d["n_inputs"] == 16 and d["hidden"] == [6]
    assert run.card["weights_sha256"] == file_sha256(out / "weights.safetensors") == d["weights_sha256"]
    assert run.card["threads"] == torch.get_num_threads() and run.card["config"]["epochs"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "config.toml", "metrics.json", "weights.safetensors"]
    rc, _, err = run_cli(capsys, *argv)  # refused: it holds a run
    assert rc == 2 and "already holds files" in err
    rc, _, _ = run_cli(capsys, *argv, "--force")
    assert rc == 0 and load_bnn_run(out).card["export_agreement"] == "360/360"


@pytest.mark.parametrize("hint", ["search", "train", "none"])
def test_invert_finds_a_checked_preimage_and_proves_the_impossible_label_unsat(hand_run, capsys, hint):
    run, labels = hand_run
    rc, d, _ = run_cli(capsys, "bnn", "invert", "--classifier", run, "--label", 1, "--hint", hint)
    r = d["result"]
    assert rc == 0 and r["status"] == "sat" and r["hint"] == hint
    assert labels[int("".join(map(str, r["preimage"])), 2)] == 1
    rc, d, _ = run_cli(capsys, "bnn", "invert", "--classifier", run, "--label", 2, "--hint", hint)
    assert rc == 0 and d["result"]["status"] == "unsat" and d["result"]["preimage"] is None


def test_invert_with_fixed_bits_returns_them(hand_run, capsys):
    run, labels = hand_run
    xs = all_inputs(16)
    want = bool(((labels == 1) & (xs[:, 0] == 1) & (xs[:, 15] == 0)).any())
    rc, d, _ = run_cli(capsys, "bnn", "invert", "--classifier", run, "--label", 1, "--fixed", "0=1,15=0")
    r = d["result"]
    assert rc == 0 and r["status"] == ("sat" if want else "unsat")
    if want:
        assert r["preimage"][0] == 1 and r["preimage"][15] == 0


def test_enumerate_lists_exactly_n_or_all_preimages(hand_run, capsys):
    run, labels = hand_run
    rc, d, _ = run_cli(capsys, "bnn", "enumerate", "--classifier", run, "--label", 1, "-n", 2)
    assert rc == 0 and d["result"]["n_found"] == 2 and d["result"]["status"] == "sat" and not d["result"]["complete"]
    assert all(labels[int("".join(map(str, x)), 2)] == 1 for x in d["result"]["preimages"])
    rc, d, _ = run_cli(capsys, "bnn", "enumerate", "--classifier", run, "--label", 2, "-n", 5)
    assert rc == 0 and d["result"]["n_found"] == 0 and d["result"]["status"] == "unsat" and d["result"]["complete"]


@pytest.mark.parametrize("method", ["exact", "dp"])
def test_exact_counts_equal_brute_force(hand_run, capsys, method):
    run, labels = hand_run
    for label in range(3):
        rc, d, _ = run_cli(capsys, "bnn", "count", "--classifier", run, "--label", label, "--method", method, "--no-progress")
        r = d["result"]
        assert rc == 0 and r["exact"] is True and r["method"] == method and r["count"] == int((labels == label).sum())
        assert r["status"] == ("unsat" if label == 2 else "sat")


def test_sampled_and_approximate_counts_bracket_the_true_count(hand_run, capsys):
    run, labels = hand_run
    true = int((labels == 1).sum())
    rc, d, _ = run_cli(capsys, "bnn", "count", "--classifier", run, "--label", 1, "--sampled", "-n", 20_000)
    r = d["result"]
    assert rc == 0 and r["n_samples"] == 20_000 and r["exact"] is False and r["low"] <= true / 2**16 <= r["high"]
    rc, d, _ = run_cli(capsys, "bnn", "count", "--classifier", run, "--label", 1, "--approx", "--epsilon", 0.5,
                       "--delta", 0.05, "--seconds", 60)
    r = d["result"]
    assert rc == 0 and r["status"] == "sat" and true / 1.5 <= r["count"] <= true * 1.5


def test_infer_agrees_with_torch_on_test_images(hand_run, capsys):
    run, _ = hand_run
    for encoding in ("totalizer", "native"):
        rc, d, _ = run_cli(capsys, "bnn", "infer", "--classifier", run, "-n", 20, "--encoding", encoding)
        r = d["result"]
        assert rc == 0 and r["n"] == 20 and r["agreement"] == 1.0
        assert r["by_propagation"] == (20 if encoding == "totalizer" else 0)
        assert r["solver"] == ("minicard" if encoding == "native" else "glucose4")


def test_robustness_gives_the_brute_force_minimum(hand_run, capsys):
    run, labels = hand_run
    x = load_bnn_run(run).binarizer(__import__("netinvert.data", fromlist=["load_dataset"]).load_dataset("digits").x_test[:1])
    k = _brute_min_flips(labels, x.numpy().astype(int)[0].tolist())
    rc, d, _ = run_cli(capsys, "bnn", "robustness", "--classifier", run, "--index", 0)
    r = d["result"]
    assert rc == 0 and r["k"] == k and r["certified"] is True and r["status"] == "sat"
    rc, d, _ = run_cli(capsys, "bnn", "robustness", "--classifier", run, "--index", 0, "--max-k", k - 1)
    r = d["result"]
    assert rc == 0 and r["k"] is None and r["status"] == "unsat" and r["lower_bound"] == k


def test_sample_and_encode_write_their_files_into_out_only(hand_run, capsys, tmp_path):
    run, labels = hand_run
    before = _snapshot(run)
    rc, d, _ = run_cli(capsys, "bnn", "sample", "--classifier", run, "--label", 1, "-n", 3, "--out", tmp_path / "s")
    r = d["result"]["results"][0]
    assert rc == 0 and r["n_samples"] == 3 and r["heatmap"] == "marginals_label1.png"
    assert (tmp_path / "s" / "marginals_label1.png").is_file()
    assert all(labels[int("".join(map(str, x)), 2)] == 1 for x in r["samples"])
    card = json.loads((tmp_path / "s" / "card.json").read_text())
    assert card["query"] == "sample" and card["input_weights_sha256"] == file_sha256(run / "weights.safetensors")
    rc, d, _ = run_cli(capsys, "bnn", "encode", "--classifier", run, "--encoding", "sortnet", "--label", 1, "--out", tmp_path / "e")
    assert rc == 0 and (tmp_path / "e" / "encoding-sortnet-label1.cnf").read_text().startswith("c netinvert")
    assert (tmp_path / "e" / "encoding-sortnet-label1.vars.json").is_file()
    rc, d, _ = run_cli(capsys, "bnn", "count", "--classifier", run, "--label", 0, "--dp", "--no-progress")
    assert rc == 0 and d["run_dir"] is None
    assert _snapshot(run) == before  # no query wrote into the run it read


def test_out_is_refused_when_it_holds_files_or_overlaps_the_input(hand_run, capsys, tmp_path):
    run, _ = hand_run
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    argv = ("bnn", "count", "--classifier", run, "--label", 0, "--dp", "--no-progress", "--out", out)
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and "already holds files" in err and (out / "keep.txt").is_file()
    rc, d, _ = run_cli(capsys, *argv, "--force")
    assert rc == 0 and sorted(p.name for p in out.iterdir()) == ["card.json", "config.toml"]
    rc, _, err = run_cli(capsys, "bnn", "count", "--classifier", run, "--label", 0, "--dp", "--out", run / "sub")
    assert rc == 2 and "never writes into" in err


def test_old_spellings_still_work(hand_run, capsys):
    run, labels = hand_run
    rc, d, _ = run_cli(capsys, "bnn", "enumerate", run, "--label", 1, "--limit", 2, "--time-s", 10)
    assert rc == 0 and d["result"]["n_found"] == 2 and d["params"]["seconds"] == 10
    rc, d, _ = run_cli(capsys, "bnn", "count", run, "--label", 1, "--sampled", "--samples", 1000)
    assert rc == 0 and d["result"]["n_samples"] == 1000
    rc, d, _ = run_cli(capsys, "bnn", "infer", run, "--n", 3)
    assert rc == 0 and d["result"]["n"] == 3
    rc, d, _ = run_cli(capsys, "bnn", "sample", run, "--label", 1, "--n", 2)
    assert rc == 0 and d["result"]["results"][0]["n_samples"] == 2 and d["result"]["results"][0]["heatmap"] is None
    rc, _, err = run_cli(capsys, "bnn", "infer", "-n", 3)
    assert rc == 2 and "--classifier RUN" in err
    rc, _, err = run_cli(capsys, "bnn", "infer", run, "--classifier", run, "-n", 3)
    assert rc == 2 and "once" in err


def test_user_errors_are_clean(hand_run, capsys):
    run, _ = hand_run
    rc, _, err = run_cli(capsys, "bnn", "invert", "--classifier", run, "--label", 1, "--encoding", "bogus")
    assert rc == 2 and "Valid names" in err
    rc, _, err = run_cli(capsys, "bnn", "count", "--classifier", run, "--label", 1, "--encoding", "native")
    assert rc == 2 and "clausal encoding" in err
    rc, _, err = run_cli(capsys, "bnn", "count", "--classifier", run, "--label", 3, "--sampled")
    assert rc == 2 and "[0, 2]" in err
    with pytest.raises(SystemExit) as info:  # argparse lists the choices
        run_cli(capsys, "bnn", "count", "--classifier", run, "--label", 1, "--method", "bogus")
    assert info.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err


def test_fan_in_training_and_exact_dp_count(tmp_path, capsys):
    """`bnn train --fan-in` then `bnn count --dp`: exact counts of every label, equal to brute force over
    the inputs the first layer reads (the others cannot change a label: each doubles the count)."""
    run = tmp_path / "fan"
    rc, _, _ = run_cli(capsys, "bnn", "train", "--dataset", "digits", "--out", run, "--epochs", 3, "--hidden", 6, "--fan-in", 2)
    rc, d, _ = run_cli(capsys, "bnn", "count", "--classifier", run, "--label", 0, "--dp", "--no-progress")
    bnn_run = load_bnn_run(run)
    net = bnn_run.net
    assert bnn_run.card["model_params"]["fan_in"] == 2
    used = np.flatnonzero((net.layers[0][0] != 0).any(0))  # at most 6 x 2: brute force stays small
    x = np.zeros((2 ** len(used), 64), dtype=np.int8)
    x[:, used] = np.array(list(itertools.product((0, 1), repeat=len(used))), dtype=np.int8)
    brute = [int((net.predict(x) == k).sum()) << (64 - len(used)) for k in range(10)]
    r = d["result"]
    assert rc == 0 and r["method"] == "dp" and r["exact"] is True and r["all_labels"] == brute
    assert r["count"] == brute[0] and sum(r["all_labels"]) == 2 ** 64


def test_count_methods_offered_are_the_registry_s() -> None:
    from netinvert.bnn import list_counters
    from netinvert.cli._bnn import COUNT_METHODS

    assert sorted(COUNT_METHODS) == sorted(list_counters())


def test_block_training_and_exact_factored_count(tmp_path, capsys):
    """`bnn train --blocks halves` then `bnn count --method factored`: each first-layer neuron reads only its
    half of the (pooled, 4x4) image, through training and a run folder, and the counts of every label equal
    brute force over all 2^16 inputs."""
    run = tmp_path / "halves"
    rc, _, _ = run_cli(capsys, "bnn", "train", "--dataset", "digits", "--pool", 2, "--out", run, "--epochs", 3,
                       "--hidden", 8, "--blocks", "halves", "--ternary-delta", 0.05)
    assert rc == 0
    rc, d, _ = run_cli(capsys, "bnn", "count", "--classifier", run, "--label", 3, "--method", "factored")
    bnn_run = load_bnn_run(run)
    net = bnn_run.net
    assert bnn_run.card["model_params"]["blocks"] == "halves"
    reads = net.layers[0][0] != 0
    assert not reads[:4, 8:].any() and not reads[4:, :8].any()  # neurons 0-3: the top 2 rows, 4-7: the bottom 2
    assert reads[:4].any() and reads[4:].any()
    labels = net.predict(all_inputs(16))
    brute = [int((labels == k).sum()) for k in range(10)]
    r = d["result"]
    assert rc == 0 and r["method"] == "factored" and r["exact"] is True and r["all_labels"] == brute
    assert r["count"] == brute[3] and sum(r["all_labels"]) == 2 ** 16


def test_block_mask_survives_garbage_rounds(tmp_path, capsys):
    """A garbage class retrains the net round by round: the block layout stays (the factored count needs it)."""
    run = tmp_path / "halves-garbage"
    rc, _, _ = run_cli(capsys, "bnn", "train", "--dataset", "digits", "--pool", 2, "--out", run, "--epochs", 2,
                       "--hidden", 8, "--blocks", "halves", "--garbage-rounds", 1, "--garbage-source", "noise",
                       "--garbage-samples", 300)
    net = load_bnn_run(run).net
    reads = net.layers[0][0] != 0
    assert rc == 0 and net.n_classes == 11
    assert not reads[:4, 8:].any() and not reads[4:, :8].any() and reads.any()


@pytest.mark.parametrize("argv, message", [
    (("--hidden", 7, "--blocks", "halves"), "multiple of 2"),
    (("--hidden", 8, "--blocks", "thirds"), "invalid choice: 'thirds'"),
    (("--hidden", 8, "--blocks", "halves", "--fan-in", 3), "when 'fan_in' is set"),
    (("--hidden", 8, "--blocks", "quadrants", "--pool", 5), "square image of at least 2 x 2"),  # 1x1
])
def test_bad_block_layouts_are_clear_errors(tmp_path, capsys, argv, message):
    if "thirds" in argv:  # argparse's own refusal exits
        with pytest.raises(SystemExit) as info:
            run_cli(capsys, "bnn", "train", "--dataset", "digits", "--out", tmp_path / "r", *argv)
        rc, err = info.value.code, capsys.readouterr().err
    else:
        rc, _, err = run_cli(capsys, "bnn", "train", "--dataset", "digits", "--epochs", 1, "--out", tmp_path / "r", *argv)
    assert rc == 2 and re.search(message, err), err
    assert not (tmp_path / "r").exists()


def test_block_layouts_offered_are_the_registry_s() -> None:
    from netinvert.bnn import list_block_layouts
    from netinvert.cli._bnn import BLOCK_LAYOUT_NAMES

    assert sorted(BLOCK_LAYOUT_NAMES) == list_block_layouts()
