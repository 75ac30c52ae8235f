"""``Inverter.load`` and ``netinvert sample`` on damaged runs: a malformed card or swapped weights is refused with one
message that says how to fix it (RunFormatError / UnsafeCheckpointError), never a TypeError or KeyError, and nothing is
written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from netinvert.cli import main
from netinvert.exceptions import RunFormatError, UnsafeCheckpointError
from netinvert.inversion import Inverter
from netinvert.runs import file_sha256, save_weights

TINY = {"batch_size": 12, "width": 4, "latent_dim": 8}


@pytest.fixture(scope="module")
def runs(digits_cnn, tmp_path_factory) -> dict[str, Path]:
    """Two fitted runs of the digits CNN: a conv generator's and an MLP generator's (whose weights are 'another's')."""
    root = tmp_path_factory.mktemp("bad_inputs")
    Inverter(digits_cnn, generator="conv", **TINY).fit(steps=2, progress=False).save(root / "conv")
    Inverter(digits_cnn, generator="mlp", **TINY).fit(steps=2, progress=False).save(root / "mlp")
    return {"conv": root / "conv", "mlp": root / "mlp"}


def _edit_card(change: Callable[[dict], None]) -> Callable[[Path, dict], None]:
    def apply(run: Path, runs: dict) -> None:
        card = json.loads((run / "card.json").read_text())
        change(card)
        (run / "card.json").write_text(json.dumps(card))
    return apply


def _set(path: str, value) -> Callable[[Path, dict], None]:
    def change(card: dict) -> None:
        *parents, key = path.split(".")
        node = card
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[key]
        else:
            node[key] = value
    return _edit_card(change)


def _swap_weights(drop_sha: bool) -> Callable[[Path, dict], None]:
    def apply(run: Path, runs: dict) -> None:
        shutil.copy(runs["mlp"] / "weights.safetensors", run / "weights.safetensors")
        if drop_sha:
            _set("weights_sha256", KeyError)(run, runs)
    return apply


def _truncate(run: Path, runs: dict) -> None:
    data = (run / "weights.safetensors").read_bytes()
    (run / "weights.safetensors").write_bytes(data[: len(data) // 2])


def _nan_weights(run: Path, runs: dict) -> None:
    from safetensors.torch import load_file

    state = load_file(str(run / "weights.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    save_weights(run / "weights.safetensors", state)
    _set("weights_sha256", file_sha256(run / "weights.safetensors"))(run, runs)


def _raw_card(text: str) -> Callable[[Path, dict], None]:
    def apply(run: Path, runs: dict) -> None:
        (run / "card.json").write_text(text)
    return apply


FIX = r"Re-run 'netinvert invert' to rewrite the run, or restore the card it wrote\."
ROWS = [
    # (id, damage, exception, message regex)
    ("card not json", _raw_card("{oops"), RunFormatError, r"card\.json is not valid JSON .*Re-run the command that wrote it"),
    ("card a list", _raw_card("[1, 2]"), RunFormatError, r"card\.json must hold a JSON object"),
    ("missing generator_params", _set("generator_params", KeyError), RunFormatError,
     r"card\.json lacks generator_params; it was not written by this command"),
    ("missing classifier", _set("classifier", KeyError), RunFormatError, r"card\.json lacks classifier"),
    ("params a list", _set("params", [1]), RunFormatError, r"'params' must be a JSON object\. Got list \[1\] instead\. " + FIX),
    ("generator not a string", _set("generator", 3), RunFormatError, r"'generator' must be a string\. Got int 3 instead\. " + FIX),
    ("unknown generator", _set("generator", "gan"), RunFormatError,
     r"names the generator 'gan', which is not registered here\. Valid names: conv, mlp.*newer netinvert"),
    ("unknown conditioning", _set("conditioning", "soft"), RunFormatError,
     r"names the conditioning 'soft', which is not registered here\. Valid names: .*label.*vector"),
    ("n_classes a string", _set("classifier.n_classes", "ten"), RunFormatError,
     r"'classifier' must hold 'input_shape' \(three positive ints\) and 'n_classes' \(a positive int\)\. Got .*'ten'.* " + FIX),
    ("input_shape too short", _set("classifier.input_shape", [8, 8]), RunFormatError, r"'classifier' must hold 'input_shape'"),
    ("unknown param", _set("params.bogus", 1), RunFormatError, r"'params' holds 'bogus', which Inverter does not take\. " + FIX),
    ("param of wrong type", _set("params.batch_size", "big"), RunFormatError,
     r"does not describe a generator this netinvert can rebuild \(ValueError: The 'batch_size' parameter .*\)\. " + FIX),
    ("generator_params of wrong type", _set("generator_params.latent_dim", "x"), RunFormatError,
     r"does not describe a generator this netinvert can rebuild \((TypeError|ValueError): .*\)\. " + FIX),
    ("generator_params unknown key", _set("generator_params.bogus", 1), RunFormatError,
     r"does not describe a generator this netinvert can rebuild \(TypeError: .*bogus.*\)\. " + FIX),
    ("conditioning_params unknown", _set("conditioning_params", {"sharpness": 2}), RunFormatError,
     r"does not describe a generator this netinvert can rebuild \(.*sharpness.*\)\. " + FIX),
    ("unknown augmentation", _set("augment", {"name": "warp", "params": {}}), RunFormatError,
     r"does not describe a generator this netinvert can rebuild \(.*warp.*\)\. " + FIX),
    ("unknown loss", _set("losses", [{"name": "nope", "weight": 1.0}]), RunFormatError,
     r"does not describe a generator this netinvert can rebuild \(.*nope.*\)\. " + FIX),
    ("losses not objects", _set("losses", ["ce:1"]), RunFormatError, r"'losses' must be a list of objects with a 'name'"),
    ("bad weights_sha256", _set("weights_sha256", "abc"), RunFormatError, r"'weights_sha256' must be 64 hex digits"),
    ("another run's weights", _swap_weights(drop_sha=False), UnsafeCheckpointError,
     r"weights\.safetensors is not the file card\.json describes: its sha256 is [0-9a-f]{64}, the card records [0-9a-f]{64}\. "
     r"It was replaced \(another run's weights\?\).*restore the run's own weights\.safetensors or re-run 'netinvert invert'"),
    ("another run's weights, old card", _swap_weights(drop_sha=True), UnsafeCheckpointError,
     r"weights\.safetensors does not fit the 'conv' generator card\.json describes \(.*\): it holds another generator's weights\. "
     r"Restore the run's own weights\.safetensors"),
    ("truncated weights", _truncate, UnsafeCheckpointError, r"weights\.safetensors is not a readable safetensors file"),
    ("nan weights", _nan_weights, UnsafeCheckpointError, r"tensor '.*' holds \d+ NaN or infinite value\(s\).*Restore the file"),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("damage", "error", "match"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_a_damaged_run_is_refused_with_a_message_that_says_how_to_fix_it(runs, digits_cnn, tmp_path, damage, error, match) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["conv"], run)
    damage(run, runs)
    before = _snapshot(tmp_path)
    with pytest.raises(error, match=match):
        Inverter.load(run, digits_cnn)
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed


def test_sample_on_a_damaged_run_prints_one_line_and_writes_nothing(runs, digits_cnn_run, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["conv"], run)
    _swap_weights(drop_sha=False)(run, runs)
    before = _snapshot(tmp_path)
    code = main(["sample", str(run), "--label", "3", "-n", "2", "--out", str(tmp_path / "s"), "--classifier", str(digits_cnn_run),
                 "--allow-other-classifier", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "is not the file card.json describes" in err
    assert _snapshot(tmp_path) == before and not (tmp_path / "s").exists()
