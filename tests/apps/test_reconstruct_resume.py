"""``netinvert reconstruct --resume``: a SIGKILLed reconstruction continues from its checkpoint to the generator and
reconstructions of an uninterrupted run (a real process is killed; reference and resumed runs are in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_processes import kill_after_checkpoint, run

from netinvert._checkpoint import CHECKPOINT_NAME, read_checkpoint_state
from netinvert.runs import load_weights, partial_dir

STEPS = 60


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec-resume") / "clf"
    code, _ = run(["train", "--dataset", "digits", "--model", "mlp", "--model-param", "hidden=[32]", "--epochs", "5",
                   "--subset", "50", "--subset-seed", "0", "--out", str(out), "--threads", "1", "--device", "cpu",
                   "--no-progress"])
    assert code == 0
    return out


def _args(classifier: Path, out: Path) -> list[str]:
    return ["reconstruct", "--classifier", str(classifier), "--out", str(out), "--steps", str(STEPS),
            "--checkpoint-steps", "5", "--seed", "0", "--threads", "1", "--device", "cpu", "--no-progress"]


def test_a_killed_reconstruction_resumes_to_the_uninterrupted_one(classifier: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert run(_args(classifier, reference))[0] == 0
    out = tmp_path / "run"
    checkpoint = kill_after_checkpoint(_args(classifier, out), out, timeout=120)
    assert 0 < read_checkpoint_state(checkpoint)["step"] < STEPS

    assert run(_args(classifier, out))[0] == 2  # a plain rerun does not throw the checkpoint away
    code, printed = run([*_args(classifier, out), "--resume"])
    assert code == 0 and json.loads(printed)["steps"] == STEPS
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()
    for name in ("weights.safetensors", "reconstructions.safetensors"):
        a, b = load_weights(out / name), load_weights(reference / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b), name
    assert json.loads((out / "metrics.json").read_text())["membership"] == \
        json.loads((reference / "metrics.json").read_text())["membership"]
