"""``netinvert bnn train --garbage-rounds K --resume``: a checkpoint after every round (the net, the garbage set, the
histories, the random states), so a killed run resumes at the next round and ends with the net of an uninterrupted one.

Digits pooled 2x2 (16 inputs), a net of 8 hidden units with fan-in 4, the ``noise`` source (no time-limited SAT
query, so the rounds are exactly reproducible); the CLI runs are real processes, one thread each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_processes import assert_same_files_and_weights, kill_after_checkpoint, run, start

import netinvert.bnn._garbage as garbage_module
from netinvert._checkpoint import CHECKPOINT_NAME, read_checkpoint_state
from netinvert.bnn import BNN, BNNRunConfig, GarbageConfig, InputBinarizer, train_with_garbage
from netinvert.cli import main
from netinvert.exceptions import RunFormatError
from netinvert.runs import partial_dir

ROUNDS = 4


def _args(out: Path, epochs: str = "4") -> list[str]:
    return ["bnn", "train", "--dataset", "digits", "--pool", "2", "--threshold", "0.3", "--hidden", "8", "--fan-in", "4",
            "--epochs", "4", "--garbage-rounds", str(ROUNDS), "--garbage-source", "noise", "--garbage-samples", "300",
            "--garbage-preimages", "3", "--garbage-epochs", epochs, "--threads", "1", "--out", str(out)]


def _rounds(card: dict) -> list[dict]:
    """The garbage history without the timings."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in card["garbage"]["history"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bnn_resume") / "reference"
    code, _ = run(_args(out))
    assert code == 0
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()
    return out


def _same_run(out: Path, ref: Path) -> None:
    assert_same_files_and_weights(out, ref)
    card, ref_card = (json.loads((d / "card.json").read_text()) for d in (out, ref))
    assert _rounds(card) == _rounds(ref_card) and [h["round"] for h in card["garbage"]["history"]] == list(range(ROUNDS + 1))
    assert card["history"] == ref_card["history"] and card["test_accuracy"] == ref_card["test_accuracy"]


def test_a_killed_run_resumes_at_the_next_round_to_the_uninterrupted_net(reference, tmp_path) -> None:
    out = tmp_path / "run"
    checkpoint = kill_after_checkpoint(_args(out), out)
    assert 0 <= read_checkpoint_state(checkpoint)["round"] < ROUNDS  # killed between the seed training and the end

    done = start(["-v", *_args(out), "--resume"])
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert "resuming garbage training after round" in err
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()
    _same_run(out, reference)


def test_an_interrupted_run_keeps_its_checkpoint_for_its_own_options_only(reference, tmp_path, monkeypatch, capsys,
                                                                         caplog) -> None:
    out = tmp_path / "run"
    train_bnn, calls = garbage_module.train_bnn, []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the retraining of round 2: the checkpoint holds round 1
            raise KeyboardInterrupt
        return train_bnn(*args, **kwargs)

    monkeypatch.setattr(garbage_module, "train_bnn", interrupting)
    assert main(_args(out)) == 130
    monkeypatch.setattr(garbage_module, "train_bnn", train_bnn)
    checkpoint = partial_dir(out) / CHECKPOINT_NAME
    assert read_checkpoint_state(checkpoint)["round"] == 1 and not out.exists()
    capsys.readouterr()

    # another config is refused, naming what differs; so is a rerun without --resume; the checkpoint survives both
    assert main([*_args(out, epochs="3"), "--resume"]) == 2
    assert "another config.garbage_epochs" in capsys.readouterr().err
    assert main(_args(out)) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert checkpoint.is_file() and not out.exists()

    with caplog.at_level("INFO", logger="netinvert"):
        code, _ = run([*_args(out), "--resume"])
    assert code == 0 and "resuming garbage training after round 1" in caplog.text
    _same_run(out, reference)


def test_resume_without_a_checkpoint_starts_afresh(tmp_path, caplog) -> None:
    out = tmp_path / "plain"
    with caplog.at_level("WARNING", logger="netinvert"):
        assert main(["bnn", "train", "--pool", "2", "--threshold", "0.3", "--hidden", "8", "--epochs", "2", "--threads",
                     "1", "--out", str(out), "--resume"]) == 0
    assert "--resume starts afresh" in caplog.text and (out / "weights.safetensors").is_file()
    assert not partial_dir(out).exists()


def test_train_with_garbage_resumes_exactly_and_refuses_other_settings(digits, tmp_path, monkeypatch) -> None:
    b = InputBinarizer(pool=2, threshold=0.3)
    x, y = b(digits.x_train), digits.y_train
    train = BNNRunConfig(dataset="digits", pool=2, threshold=0.3, hidden=(8,), epochs=4, fan_in=4).train_config()
    config = GarbageConfig(rounds=3, source="noise", samples=300, preimages=3)

    def model() -> BNN:
        torch.manual_seed(0)
        return BNN(16, (8,), 11, fan_in=4)

    want = model()
    ref = train_with_garbage(want, x, y, train, config, progress=False)
    path = tmp_path / CHECKPOINT_NAME
    train_bnn, calls = garbage_module.train_bnn, []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # round 3's retraining
            raise KeyboardInterrupt
        return train_bnn(*args, **kwargs)

    monkeypatch.setattr(garbage_module, "train_bnn", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train_with_garbage(model(), x, y, train, config, progress=False, checkpoint=path)
    monkeypatch.setattr(garbage_module, "train_bnn", train_bnn)
    assert read_checkpoint_state(path)["round"] == 2
    got = model()
    res = train_with_garbage(got, x, y, train, config, progress=False, resume_from=path)
    assert all(torch.equal(v, got.state_dict()[k]) for k, v in want.state_dict().items())
    assert np.array_equal(res.garbage, ref.garbage) and res.train_history == ref.train_history
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in res.history] == \
        [{k: v for k, v in h.items() if k != "seconds"} for h in ref.history]
    with pytest.raises(RunFormatError, match="another garbage.samples"):
        train_with_garbage(model(), x, y, train, GarbageConfig(rounds=3, source="noise", samples=200, preimages=3),
                           progress=False, resume_from=path)
    with pytest.raises(RunFormatError, match="another data_sha256"):
        train_with_garbage(model(), x.flip(0), y.flip(0), train, config, progress=False, resume_from=path)
