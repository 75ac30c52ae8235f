"""``netinvert invert --resume``: a killed run continues from its checkpoint and ends where an uninterrupted one ends.

The runs are real processes (SIGKILL and SIGTERM cannot be simulated in-process), one thread each, on the shared
digits CNN run folder; the verifiers are trained once into a shared cache.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from cli_processes import assert_same_files_and_weights, kill_after_checkpoint, run, start, wait_for_checkpoint
import torch

from netinvert.cli import main
from netinvert.inversion import Inverter, Objective
from netinvert._checkpoint import CHECKPOINT_NAME, read_checkpoint, read_checkpoint_state
from netinvert.models import build_model
from netinvert.runs import partial_dir

STEPS = 300


def _args(clf: Path, out: Path, verifiers: Path, steps: int = STEPS) -> list[str]:
    return ["invert", "--classifier", str(clf), "--out", str(out), "--steps", str(steps), "--width", "8", "--batch-size", "20",
            "-n", "2", "--verifiers", str(verifiers), "--verifier-epochs", "1", "--no-progress", "--device", "cpu",
            "--threads", "1", "--checkpoint-steps", "5", "--ema", "0.9"]


@pytest.fixture(scope="module")
def reference(digits_cnn_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted run (which also trains the shared verifiers), and the verifier cache."""
    root = tmp_path_factory.mktemp("resume")
    out, verifiers = root / "reference", root / "verifiers"
    code, _ = run(_args(digits_cnn_run, out, verifiers))
    assert code == 0
    return out, verifiers


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(reference, digits_cnn_run, tmp_path) -> None:
    ref, verifiers = reference
    out = tmp_path / "run"
    checkpoint = kill_after_checkpoint(_args(digits_cnn_run, out, verifiers), out)
    step = read_checkpoint_state(checkpoint)["step"]
    assert 0 < step < STEPS  # killed mid-training, after at least one checkpoint

    done = start(["-v", *_args(digits_cnn_run, out, verifiers), "--resume"])
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert "resuming from step" in err
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()
    assert_same_files_and_weights(out, ref)
    history = json.loads((out / "history.json").read_text())
    assert history["step"] == list(range(STEPS))
    assert history["loss"] == json.loads((ref / "history.json").read_text())["loss"]


def test_sigterm_keeps_the_partial_run_and_only_force_starts_afresh(reference, digits_cnn_run, tmp_path, caplog) -> None:
    _, verifiers = reference
    out = tmp_path / "run"
    proc = start(_args(digits_cnn_run, out, verifiers))
    checkpoint = wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and not out.exists()
    assert 0 < read_checkpoint_state(checkpoint)["step"] < STEPS

    # another config is refused, and the partial run survives the refusal
    code, _ = run([*_args(digits_cnn_run, out, verifiers, steps=7), "--resume"])
    assert code == 2 and checkpoint.is_file() and not out.exists()

    # a plain rerun is refused: forgetting --resume must not throw the checkpoint away
    code, _ = run(_args(digits_cnn_run, out, verifiers, steps=7))
    assert code == 2 and checkpoint.is_file() and not out.exists()

    # with --force it discards it and starts afresh (the other budget shows that it did not continue)
    with caplog.at_level("WARNING", logger="netinvert"):
        code, printed = run([*_args(digits_cnn_run, out, verifiers, steps=7), "--force"])
    assert code == 0 and json.loads(printed)["steps"] == 7
    assert "Discarding the unfinished run" in caplog.text
    assert json.loads((out / "history.json").read_text())["step"] == list(range(7))
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()

    # --resume of a complete run is refused; with --force it redoes it, afresh when there is no checkpoint
    before = (out / "weights.safetensors").read_bytes()
    code, _ = run([*_args(digits_cnn_run, out, verifiers, steps=7), "--resume"])
    assert code == 2 and (out / "weights.safetensors").read_bytes() == before
    caplog.clear()
    with caplog.at_level("WARNING", logger="netinvert"):
        code, _ = run([*_args(digits_cnn_run, out, verifiers, steps=7), "--resume", "--force"])
    assert code == 0 and "--resume starts afresh" in caplog.text
    assert (out / "weights.safetensors").read_bytes() == before  # same seed and config, same weights


def test_resume_refusals_name_the_fix(reference, digits_cnn_run, tmp_path, capsys) -> None:
    _, verifiers = reference
    out = tmp_path / "done"
    out.mkdir()
    (out / "card.json").write_text("{}")
    assert main([*_args(digits_cnn_run, out, verifiers, steps=3), "--resume"]) == 2
    assert "already complete; use --force to redo" in capsys.readouterr().err


@pytest.mark.parametrize("interrupt_at", [1, 4])  # inside the first step (nothing saved yet) and a later one
def test_fit_interrupted_inside_a_step_resumes_exactly(tmp_path, monkeypatch, interrupt_at) -> None:
    torch.manual_seed(0)
    clf = build_model("cnn", input_shape=(1, 8, 8), n_classes=3)
    settings = {"batch_size": 12, "width": 8, "ema": 0.9, "seed": 3}
    ref = Inverter(clf, **settings).fit(steps=6, progress=False)
    evaluate, calls = Objective.evaluate, []

    def interrupting(self, ctx):
        calls.append(1)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return evaluate(self, ctx)

    path = tmp_path / CHECKPOINT_NAME
    monkeypatch.setattr(Objective, "evaluate", interrupting)
    with pytest.raises(KeyboardInterrupt):
        Inverter(clf, **settings).fit(steps=6, progress=False, checkpoint=path, checkpoint_seconds=None)
    monkeypatch.setattr(Objective, "evaluate", evaluate)
    tensors, state = read_checkpoint(path)
    assert state["step"] == interrupt_at - 1 and {"rng.torch", "rng.generator", "rng.numpy"} <= tensors.keys()
    assert any(k.startswith("optimizer.") for k in tensors) == (interrupt_at > 1)
    again = Inverter(clf, **settings).fit(steps=6, progress=False, resume_from=path)
    want, got = ref.generator_.state_dict(), again.generator_.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert again.history_["loss"] == ref.history_["loss"]
    with pytest.raises(ValueError, match="another params"):
        Inverter(clf, **{**settings, "lr": 1e-4}).fit(steps=6, progress=False, resume_from=path)
