"""``netinvert train --resume``: a killed or interrupted training continues from its checkpoint and ends with the
weights of an uninterrupted run of the same seed.

The killed and terminated CLI runs are real processes (SIGKILL and SIGTERM cannot be simulated in-process), one
thread each; the reference run and the resumed runs are in-process (the console script's code path, without a
process start's seconds of imports). The interrupts inside ``train_classifier`` are simulated with
:class:`KeyboardInterrupt` on a small subset of digits.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from cli_processes import assert_same_files_and_weights, kill_after_checkpoint, run, start, wait_for_checkpoint
import torch

from netinvert._checkpoint import CHECKPOINT_NAME, read_checkpoint, read_checkpoint_state
from netinvert._device import seed_everything
from netinvert.cli import main
from netinvert.exceptions import RunExistsError, RunFormatError
from netinvert.models import ClassifierRunConfig, TrainConfig, build_model, run_training, train_classifier
from netinvert.models import _train
from netinvert.runs import partial_dir

EPOCHS = 3
BATCHES = 10  # per epoch: 640 digits training images in batches of 64


def _args(out: Path, epochs: int = EPOCHS) -> list[str]:
    return ["train", "--dataset", "digits", "--model", "cnn", "--model-param", "channels=[8,16]", "--model-param", "hidden=32",
            "--epochs", str(epochs), "--subset", "640", "--lr", "0.003", "--seed", "0", "--device", "cpu", "--threads", "1", "--no-progress",
            "--checkpoint-steps", "3", "--out", str(out)]


def _assert_same_run(got: Path, want: Path) -> None:
    assert_same_files_and_weights(got, want)
    card, ref = (json.loads((p / "card.json").read_text()) for p in (got, want))
    assert card["test_accuracy"] == ref["test_accuracy"] and card["history"] == ref["history"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of the same options."""
    out = tmp_path_factory.mktemp("train-resume") / "reference"
    code, _ = run(_args(out))
    assert code == 0
    return out


def test_a_killed_training_resumes_to_the_weights_of_an_uninterrupted_one(reference, tmp_path, caplog) -> None:
    out = tmp_path / "run"
    checkpoint = kill_after_checkpoint(_args(out), out)
    step = read_checkpoint_state(checkpoint)["step"]
    assert 0 < step < EPOCHS * BATCHES  # killed mid-training, after at least one checkpoint

    with caplog.at_level("INFO", logger="netinvert"):
        code, printed = run([*_args(out), "--resume"])
    assert code == 0 and json.loads(printed)["run_dir"] == str(out)
    assert f"resuming from epoch {step // BATCHES + 1}, batch {step % BATCHES}" in caplog.text
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()
    _assert_same_run(out, reference)


def test_sigterm_keeps_the_checkpoint_and_resume_checks_the_config(reference, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    proc = start(_args(out))
    checkpoint = wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and not out.exists()
    assert 0 < read_checkpoint_state(checkpoint)["step"] < EPOCHS * BATCHES

    # another config is refused, naming what differs, and the checkpoint survives the refusal
    capsys.readouterr()
    assert main([*_args(out, epochs=2), "--resume"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert checkpoint.is_file() and not out.exists()

    # the same config continues from the checkpoint written on SIGTERM and ends where the reference ends
    code, printed = run([*_args(out), "--resume"])
    assert code == 0 and json.loads(printed)["test_accuracy"] == json.loads((reference / "card.json").read_text())["test_accuracy"]
    assert not partial_dir(out).exists()
    _assert_same_run(out, reference)

    # --resume of a complete run is refused and leaves it alone
    before = (out / "weights.safetensors").read_bytes()
    assert main([*_args(out), "--resume"]) == 2
    assert "already complete; use --force to redo" in capsys.readouterr().err
    assert (out / "weights.safetensors").read_bytes() == before


# ---------------------------------------------------------------------------------------------------------- in-process
@pytest.fixture(scope="module")
def small(digits):
    return digits.subset(n_train=300, seed=0)  # 5 batches of 64 per epoch


def _model(data):
    seed_everything(0)
    return build_model("cnn", input_shape=data.input_shape, n_classes=data.n_classes, mean=data.mean, std=data.std,
                       channels=[4, 8], hidden=16)


def _interrupt_on(monkeypatch, owner, name, at):
    """Raise KeyboardInterrupt at the ``at``-th call of ``owner.name``."""
    original, calls = getattr(owner, name), []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, interrupting)
    return lambda: monkeypatch.setattr(owner, name, original)


@pytest.mark.parametrize(
    ("where", "at", "adv_eps", "position"),
    [
        ("evaluate", 1, 0.0, (0, 5)),  # the epoch boundary: all batches trained, evaluation not yet recorded
        ("loss", 8, 0.0, (1, 2)),  # mid-epoch, inside a batch: rewound to its start
        ("loss", 3 * 7 + 3, 0.1, (1, 2)),  # mid-epoch with PGD (3 losses a batch), after the attack drew its start
        ("scheduler", 7, 0.0, (1, 0)),  # inside the update: the last periodic checkpoint (every 5 batches) is kept
    ],
)
def test_interrupted_training_resumes_exactly(small, tmp_path, monkeypatch, where, at, adv_eps, position) -> None:
    config = TrainConfig(epochs=2, batch_size=64, lr=3e-3, adv_eps=adv_eps, adv_steps=2, seed=0, device="cpu")
    ref = _model(small)
    ref_history = train_classifier(ref, small, config, progress=False)

    owner, name = {"evaluate": (_train, "evaluate_classifier"), "loss": (_train.F, "cross_entropy"),
                   "scheduler": (torch.optim.lr_scheduler.OneCycleLR, "step")}[where]
    undo = _interrupt_on(monkeypatch, owner, name, at)
    path = tmp_path / CHECKPOINT_NAME
    with pytest.raises(KeyboardInterrupt):
        train_classifier(_model(small), small, config, progress=False, checkpoint=path, checkpoint_steps=5,
                         checkpoint_seconds=None)
    undo()
    tensors, state = read_checkpoint(path)
    assert (state["epoch"], state["batch"]) == position
    assert {"rng.torch", "rng.generator", "rng.numpy", "perm"} <= tensors.keys() or position[1] == 0
    assert state["scheduler"]["last_epoch"] == position[0] * 5 + position[1]

    again = _model(small)
    history = train_classifier(again, small, config, progress=False, resume_from=path)
    assert history == ref_history
    want, got = ref.state_dict(), again.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    with pytest.raises(RunFormatError, match="train.lr"):
        train_classifier(_model(small), small, TrainConfig(**{**config.to_dict(), "lr": 1e-3}), progress=False,
                         resume_from=path)


def test_run_training_resume_edges(tmp_path, caplog) -> None:
    config = ClassifierRunConfig(dataset="digits", model="mlp", model_params={"hidden": [8]}, train=TrainConfig(epochs=1),
                                 subset=100, seed=0, device="cpu", threads=1)
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="netinvert"):
        run_training(config, out, resume=True, progress=False)
    assert "--resume starts afresh" in caplog.text
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()
    with pytest.raises(RunExistsError, match="already complete"):
        run_training(config, out, resume=True, progress=False)

    # a left-over unfinished run is refused without resume, and discarded, with a warning, with force
    other = tmp_path / "other"
    partial_dir(other).mkdir()
    (partial_dir(other) / CHECKPOINT_NAME).write_bytes(b"junk")
    with pytest.raises(RunExistsError, match="left a checkpoint .* pass --resume"):
        run_training(config, other, progress=False)
    assert (partial_dir(other) / CHECKPOINT_NAME).read_bytes() == b"junk"
    caplog.clear()
    with caplog.at_level("WARNING", logger="netinvert"):
        run_training(config, other, force=True, progress=False)
    assert "Discarding the unfinished run" in caplog.text and not partial_dir(other).exists()
    assert (other / "weights.safetensors").read_bytes() == (out / "weights.safetensors").read_bytes()

    # bad intervals are refused before any work
    for kwargs in ({"checkpoint_steps": 0}, {"checkpoint_steps": 1.5}, {"checkpoint_seconds": -1.0},
                   {"checkpoint_seconds": float("nan")}):
        with pytest.raises(ValueError, match=f"'{next(iter(kwargs))}' parameter of run_training"):
            run_training(config, tmp_path / "bad", progress=False, **kwargs)
        assert not (tmp_path / "bad").exists() and not partial_dir(tmp_path / "bad").exists()
