"""``netinvert ood train --resume``: a killed run continues from its last finished round and ends with the weights,
garbage set and history of an uninterrupted run (a real process is SIGKILLed; the reference and the resumed runs
run in-process, one thread)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_processes import kill_after_checkpoint, run

from netinvert._checkpoint import CHECKPOINT_NAME, read_checkpoint_state
from netinvert.apps.ood import OODRunConfig, run_ood
from netinvert.exceptions import RunExistsError
from netinvert.runs import load_weights, partial_dir

ROUNDS = 3


def _args(out: Path) -> list[str]:
    return ["ood", "train", "--dataset", "digits", "--model", "mlp", "--model-param", "hidden=[16]", "--base-epochs", "2",
            "--rounds", str(ROUNDS), "--steps", "3", "-n", "20", "--noise-uniform", "16", "--noise-gaussian", "16",
            "--epochs-per-round", "1", "--verifier-epochs", "1", "--seed", "0", "--device", "cpu", "--threads", "1",
            "--no-progress", "--out", str(out)]


def _same(got: Path, want: Path) -> None:
    for name in ("classifier/weights.safetensors", "plain/weights.safetensors", "base/weights.safetensors",
                 "garbage.safetensors"):
        a, b = load_weights(got / name), load_weights(want / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b), name
    assert json.loads((got / "history.json").read_text()) == json.loads((want / "history.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ood-resume") / "reference"
    code, _ = run(_args(out))
    assert code == 0
    return out


def test_a_killed_ood_run_resumes_to_the_run_of_an_uninterrupted_one(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    checkpoint = kill_after_checkpoint(_args(out), out, timeout=120)
    done = read_checkpoint_state(checkpoint)["history"][-1]["round"]
    assert 0 <= done < ROUNDS

    with pytest.raises(RunExistsError, match="pass --resume"):  # a plain rerun does not discard the checkpoint
        run_ood(OODRunConfig(dataset="digits", model="mlp", model_params={"hidden": [16]}, base_epochs=2, rounds=ROUNDS,
                             steps=3, samples_per_round=20, noise_uniform=16, noise_gaussian=16, epochs_per_round=1,
                             verifier_epochs=1, device="cpu", threads=1), out, progress=False)
    assert checkpoint.is_file()
    code, printed = run([*_args(out), "--resume"])
    assert code == 0 and json.loads(printed)["run_dir"] == str(out)
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()
    _same(out, reference)
