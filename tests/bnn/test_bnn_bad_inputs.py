"""Every bad BNN query input is refused with one clear line and exit code 2, before any work.

Each row runs ``netinvert bnn ...`` in-process on a real run folder and checks: exit code 2, one
``netinvert: error:`` line in the sklearn message shape (no traceback), that the refusal came before
any encoding, training hint or solver call (well under a second), that the input run is unchanged
and that no ``--out`` folder appeared.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from netinvert.bnn import BNNQueryParams, count_preimages, encode, load_bnn_run, run_bnn_query, sample_preimages
from netinvert.cli import main

P = "The '{}' parameter of {} must be"

BAD = [
    # 13.7: tracebacks before
    (["sample", "--label", "99"], P.format("label", "bnn sample") + r" an int in \[0, 9\]\. Got 99 instead\."),
    (["encode", "--label", "99"], P.format("label", "bnn encode") + r" an int in \[0, 9\]\. Got 99 instead\."),
    (["count", "--label", "10"], P.format("label", "bnn count") + r" an int in \[0, 9\]\. Got 10 instead\."),
    (["invert", "--label", "1", "--fixed", "999=1", "--hint", "train"],
     P.format("fixed", "bnn invert") + r" a mapping of input indices in \[0, 63\] to 0 or 1\. Got \{999: 1\} instead\."),
    (["invert", "--label", "1", "--hidden-values", "9:0=1"],
     P.format("hidden_values", "bnn invert") + r" .*layer in \[0, 0\].*Got '9:0=1' instead\."),
    (["invert", "--label", "1", "--hidden-values", "0:99=1"],
     P.format("hidden_values", "bnn invert") + r" .*neuron in \[0, 7\] in layer 0.*Got '0:99=1' instead\."),
    (["invert", "--label", "1", "--near-index", "99999", "--max-flips", "3"],
     P.format("near_index", "bnn invert") + r" an int in \[0, 359\]\. Got 99999 instead\."),
    (["robustness", "--index", "99999"], P.format("index", "bnn robustness") + r" an int in \[0, 359\]\. Got 99999 instead\."),
    (["count", "--label", "1", "--approx", "--epsilon", "-1"],
     P.format("epsilon", "BNNQueryParams") + r" a float in \(0, inf\)\. Got -1\.0 instead\."),
    (["count", "--label", "1", "--approx", "--delta", "0"], P.format("delta", "BNNQueryParams") + r" a float in \(0, 1\)\. Got 0\.0"),
    (["count", "--label", "1", "--approx", "--delta", "1"], P.format("delta", "BNNQueryParams") + r" a float in \(0, 1\)\. Got 1\.0"),
    # 13.8: accepted silently before
    (["invert", "--label", "1", "--near-index", "-1", "--max-flips", "3"],
     P.format("near_index", "BNNQueryParams") + r" None or an int in \[0, inf\)\. Got -1 instead\."),
    (["robustness", "--index", "-1"], P.format("index", "BNNQueryParams") + r" an int in \[0, inf\)\. Got -1 instead\."),
    (["invert", "--label", "1", "--fixed", "0=1,0=0"], r"The --fixed option names '0' twice; give each once\."),
    (["invert", "--label", "1", "--hidden-values", "0:1=1,0:1=0"], r"The --hidden-values option names '0:1' twice"),
    (["invert", "--label", "1", "--fixed", "a=1"], r"The --fixed option must be 'index=bit' items"),
    (["invert", "--label", "1", "--fixed=-3=1"], r"The --fixed option must be 'index=bit' items"),
    (["infer", "-n", "-5"], P.format("n", "BNNQueryParams") + r" None or an int in \[1, inf\)\. Got -5 instead\."),
    (["infer", "-n", "0"], P.format("n", "BNNQueryParams") + r" None or an int in \[1, inf\)\. Got 0 instead\."),
    (["enumerate", "--label", "1", "-n", "-1"], P.format("n", "BNNQueryParams") + r" .*Got -1 instead\."),
    (["enumerate", "--label", "1", "--limit", "-1"], P.format("n", "BNNQueryParams") + r" .*Got -1 instead\."),
    (["invert", "--label", "1", "--seconds", "-1"], P.format("seconds", "BNNQueryParams") + r" None or a float in \(0, inf\]\. Got -1\.0"),
    (["invert", "--label", "1", "--seconds", "0"], P.format("seconds", "BNNQueryParams") + r" .*Got 0\.0 instead\."),
    (["count", "--label", "1", "--time-s", "-1"], P.format("seconds", "BNNQueryParams") + r" .*Got -1\.0 instead\."),
    (["invert", "--label", "1", "--search-s", "-1"], P.format("search_seconds", "BNNQueryParams") + r" a float in \[0, inf\)"),
    (["count", "--label", "1", "--dp", "--max-states", "0"], P.format("max_states", "BNNQueryParams") + r" an int in \[1, inf\)"),
    (["count", "--label", "1", "--memory-gb", "0"], P.format("memory_gb", "BNNQueryParams") + r" None or a float in \(0, inf\]"),
    (["sample", "--label", "1", "--cpu-seconds", "-2"], P.format("cpu_seconds", "BNNQueryParams") + r" .*Got -2\.0"),
    (["invert", "--label", "1", "--near-index", "0", "--max-flips", "-1"], P.format("max_flips", "BNNQueryParams")),
    (["robustness", "--max-k=-1"], P.format("max_k", "BNNQueryParams") + r" None or an int in \[0, inf\)"),
    (["invert"], None),  # --label is required: argparse refuses it, also with exit code 2
]


def _tree(folder):
    """Every file under ``folder`` with its sha256 (the listing and the contents)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_refused_before_any_work(digits_bnn_run, tmp_path, capsys, argv, message):
    before = _tree(digits_bnn_run)
    out = tmp_path / "out"
    query, *rest = argv
    t0 = time.perf_counter()
    if message is None:
        with pytest.raises(SystemExit) as exc:
            main(["bnn", query, "--classifier", str(digits_bnn_run), "--out", str(out), *rest])
        rc = exc.value.code
    else:
        rc = main(["bnn", query, "--classifier", str(digits_bnn_run), "--out", str(out), *rest])
    seconds = time.perf_counter() - t0
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    assert "Traceback" not in captured.err
    if message is not None:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, lines
        assert re.fullmatch(r"netinvert: error: " + message + ".*", lines[0]), lines[0]
    # refused before encoding, any hint training or a solver call (loading the run and, for an image
    # index, the 360 test images takes a few hundred milliseconds on a busy 2-core machine)
    assert seconds < 1.0, seconds
    assert not out.exists()
    assert _tree(digits_bnn_run) == before


def test_library_refuses_the_same_before_work(digits_bnn_run):
    run = load_bnn_run(digits_bnn_run)
    with pytest.raises(ValueError, match=r"The 'label' parameter of bnn count must be an int in \[0, 9\]\. Got 12"):
        run_bnn_query("count", run, {"label": 12})
    with pytest.raises(ValueError, match=r"The 'fixed' parameter of BNNQueryParams"):
        BNNQueryParams(fixed={-1: 1})
    with pytest.raises(ValueError, match=r"The 'hidden_values' parameter of BNNQueryParams"):
        BNNQueryParams(hidden_values={(0, 1): 2})
    enc = encode(run.net, "totalizer")
    for kwargs, name in (({"epsilon": 0}, "epsilon"), ({"delta": 1.5}, "delta"), ({"memory_gb": -1}, "memory_gb"),
                         ({"cpu_seconds": 0}, "cpu_seconds"), ({"max_states": 0}, "max_states")):
        with pytest.raises(ValueError, match=f"The '{name}' parameter"):
            count_preimages(enc, 1, method="approx", **kwargs)
    with pytest.raises(ValueError, match=r"The 'label' parameter of sample_preimages must be an int in \[0, 9\]"):
        sample_preimages(enc, 99, 5)


@pytest.mark.parametrize("damage", ["flip", "nan"])
def test_a_damaged_bnn_run_is_refused_at_load(digits_bnn_run, tmp_path, damage):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from netinvert.bnn import load_bnn_run
    from netinvert.exceptions import UnsafeCheckpointError

    run = tmp_path / "run"
    shutil.copytree(digits_bnn_run, run)
    weights = run / "weights.safetensors"
    if damage == "flip":  # bytes changed in place: the card's sha256 no longer matches
        data = bytearray(weights.read_bytes())
        data[-8:] = b"\xff" * 8
        weights.write_bytes(bytes(data))
        match = "changed since card.json was written"
    else:  # a NaN written by a tool that also fixed the card's sha256
        import json

        from netinvert.runs import file_sha256

        state = load_file(str(weights))
        key = next(k for k, v in state.items() if v.is_floating_point())
        state[key] = torch.full_like(state[key], float("nan"))
        save_file(state, str(weights))
        card = json.loads((run / "card.json").read_text())
        card["weights_sha256"] = file_sha256(weights)
        (run / "card.json").write_text(json.dumps(card))
        match = "NaN or infinite"
    with pytest.raises(UnsafeCheckpointError, match=match):
        load_bnn_run(run)
