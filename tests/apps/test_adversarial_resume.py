"""``netinvert adversarial train --resume``: a killed run continues from its checkpoint and ends where an uninterrupted
one ends; another config is refused; a fit interrupted inside a step (or inside Adam's update) resumes exactly.

The CLI runs are real processes (SIGKILL and SIGTERM cannot be simulated in-process), one thread each, on the shared
digits CNN run folder, with a small generator (batch 16, one hidden layer of 32: a few ms a step).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from cli_processes import assert_same_files_and_weights, kill_after_checkpoint, run, start, wait_for_checkpoint

from netinvert._checkpoint import CHECKPOINT_NAME, read_checkpoint, read_checkpoint_state
from netinvert.apps.adversarial import AdversarialGenerator
from netinvert.apps.adversarial import _generator as generator_module
from netinvert.cli import main
from netinvert.exceptions import RunFormatError
from netinvert.models import build_model
from netinvert.runs import partial_dir

STEPS = 300


def _args(clf: Path, out: Path, steps: int = STEPS, eps: str = "0.1") -> list[str]:
    return ["adversarial", "train", "--classifier", str(clf), "--out", str(out), "--steps", str(steps), "--eps", eps,
            "--batch-size", "16", "--hidden", "32", "--no-progress", "--device", "cpu", "--threads", "1",
            "--checkpoint-steps", "5"]


@pytest.fixture(scope="module")
def reference(digits_cnn_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (it writes checkpoints too, and discards them when done)."""
    out = tmp_path_factory.mktemp("adv_resume") / "reference"
    code, _ = run(_args(digits_cnn_run, out))
    assert code == 0
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()
    return out


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(reference, digits_cnn_run, tmp_path) -> None:
    out = tmp_path / "run"
    checkpoint = kill_after_checkpoint(_args(digits_cnn_run, out), out)
    step = read_checkpoint_state(checkpoint)["step"]
    assert 0 < step < STEPS  # killed mid-training, after at least one checkpoint

    done = start(["-v", *_args(digits_cnn_run, out), "--resume"])
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert "resuming the adversarial generator from step" in err
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()
    assert_same_files_and_weights(out, reference)
    history, ref_history = (json.loads((d / "history.json").read_text()) for d in (out, reference))
    assert history["step"] == list(range(1, STEPS + 1))
    for key in ("loss", "margin", "diversity", "success"):
        assert history[key] == ref_history[key], key
    metrics, ref_metrics = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    assert {k: v for k, v in metrics.items() if k != "seconds"} == {k: v for k, v in ref_metrics.items() if k != "seconds"}


def test_sigterm_keeps_the_partial_run_and_only_its_own_options_resume_it(reference, digits_cnn_run, tmp_path, caplog,
                                                                          capsys) -> None:
    out = tmp_path / "run"
    proc = start(_args(digits_cnn_run, out))
    checkpoint = wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and not out.exists()
    assert 0 < read_checkpoint_state(checkpoint)["step"] < STEPS

    # another config is refused, naming what differs, and the partial run survives the refusal
    assert main([*_args(digits_cnn_run, out, eps="0.2"), "--resume"]) == 2
    assert "another config.eps" in capsys.readouterr().err
    assert checkpoint.is_file() and not out.exists()

    # a plain rerun is refused: forgetting --resume must not throw the checkpoint away
    assert main(_args(digits_cnn_run, out, steps=7)) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert checkpoint.is_file() and not out.exists()

    # with --force it discards it and starts afresh (the other budget shows that it did not continue)
    with caplog.at_level("WARNING", logger="netinvert"):
        code, printed = run([*_args(digits_cnn_run, out, steps=7), "--force"])
    assert code == 0 and json.loads(printed)["steps"] == 7
    assert "Discarding the unfinished run" in caplog.text
    assert json.loads((out / "history.json").read_text())["step"] == list(range(1, 8))
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()

    # --resume of a complete run is refused; with --force it redoes it, afresh when there is no checkpoint
    before = (out / "weights.safetensors").read_bytes()
    assert main([*_args(digits_cnn_run, out, steps=7), "--resume"]) == 2
    assert "already complete; use --force to redo" in capsys.readouterr().err
    assert (out / "weights.safetensors").read_bytes() == before
    caplog.clear()
    with caplog.at_level("WARNING", logger="netinvert"):
        code, _ = run([*_args(digits_cnn_run, out, steps=7), "--resume", "--force"])
    assert code == 0 and "--resume starts afresh" in caplog.text
    assert (out / "weights.safetensors").read_bytes() == before  # same seed and config, same weights


def test_resume_without_a_checkpoint_starts_afresh(digits_cnn_run, tmp_path, caplog) -> None:
    out = tmp_path / "fresh"
    with caplog.at_level("WARNING", logger="netinvert"):
        code, printed = run([*_args(digits_cnn_run, out, steps=3), "--resume"])
    assert code == 0 and json.loads(printed)["steps"] == 3
    assert "--resume starts afresh" in caplog.text
    assert not partial_dir(out).exists() and not (out / CHECKPOINT_NAME).exists()


# --------------------------------------------------------------------------- the fit, in-process

SETTINGS = {"eps": 0.1, "batch_size": 8, "hidden": (16,), "latent_dim": 4, "seed": 3}


@pytest.fixture(scope="module")
def small() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    clf = build_model("cnn", input_shape=(1, 8, 8), n_classes=3).eval()
    g = torch.Generator().manual_seed(1)
    return clf, torch.rand(40, 1, 8, 8, generator=g), torch.randint(3, (40,), generator=g)


def _same(a: AdversarialGenerator, b: AdversarialGenerator) -> None:
    want, got = a.generator_.state_dict(), b.generator_.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    for key in ("step", "loss", "margin", "diversity", "success"):
        assert a.history_[key] == b.history_[key], key


@pytest.mark.parametrize("interrupt_at", [1, 4])  # inside the first step (nothing saved yet) and a later one
def test_fit_interrupted_inside_a_step_resumes_exactly(small, tmp_path, monkeypatch, interrupt_at) -> None:
    clf, x, y = small
    ref = AdversarialGenerator(clf, **SETTINGS).fit(x, y, steps=6, progress=False)
    margin_loss, calls = generator_module.margin_loss, []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 * interrupt_at - 1:  # two margins a step (targeted and untargeted): the step's first
            raise KeyboardInterrupt
        return margin_loss(*args, **kwargs)

    path = tmp_path / CHECKPOINT_NAME
    monkeypatch.setattr(generator_module, "margin_loss", interrupting)
    with pytest.raises(KeyboardInterrupt):
        AdversarialGenerator(clf, **SETTINGS).fit(x, y, steps=6, progress=False, checkpoint=path, checkpoint_seconds=None)
    monkeypatch.setattr(generator_module, "margin_loss", margin_loss)
    tensors, state = read_checkpoint(path)
    assert state["step"] == interrupt_at - 1 and {"rng.torch", "rng.generator", "rng.numpy"} <= tensors.keys()
    assert any(k.startswith("optimizer.") for k in tensors) == (interrupt_at > 1)
    _same(ref, AdversarialGenerator(clf, **SETTINGS).fit(x, y, steps=6, progress=False, resume_from=path))


def test_fit_interrupted_inside_the_update_keeps_the_last_checkpoint(small, tmp_path, monkeypatch) -> None:
    clf, x, y = small
    ref = AdversarialGenerator(clf, **SETTINGS).fit(x, y, steps=6, progress=False)
    adam_step, calls = torch.optim.Adam.step, []

    def interrupting(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return adam_step(self, *args, **kwargs)

    path = tmp_path / CHECKPOINT_NAME
    monkeypatch.setattr(torch.optim.Adam, "step", interrupting)
    with pytest.raises(KeyboardInterrupt):
        AdversarialGenerator(clf, **SETTINGS).fit(x, y, steps=6, progress=False, checkpoint=path, checkpoint_steps=2,
                                                  checkpoint_seconds=None)
    monkeypatch.setattr(torch.optim.Adam, "step", adam_step)
    assert read_checkpoint_state(path)["step"] == 2  # the checkpoint before the step whose update was cut short
    _same(ref, AdversarialGenerator(clf, **SETTINGS).fit(x, y, steps=6, progress=False, resume_from=path))


def test_fit_resume_refuses_other_settings_classifier_or_images(small, tmp_path) -> None:
    clf, x, y = small
    path = tmp_path / CHECKPOINT_NAME
    AdversarialGenerator(clf, **SETTINGS).fit(x, y, steps=2, progress=False, checkpoint=path)
    assert read_checkpoint_state(path)["step"] == 2  # the end of training writes one
    with pytest.raises(RunFormatError, match="another params.lr"):
        AdversarialGenerator(clf, **{**SETTINGS, "lr": 1e-4}).fit(x, y, steps=4, progress=False, resume_from=path)
    with pytest.raises(RunFormatError, match="another data_sha256"):
        AdversarialGenerator(clf, **SETTINGS).fit(x.flip(0), y.flip(0), steps=4, progress=False, resume_from=path)
    other = build_model("cnn", input_shape=(1, 8, 8), n_classes=3).eval()
    with pytest.raises(RunFormatError, match="another classifier"):
        AdversarialGenerator(other, **SETTINGS).fit(x, y, steps=4, progress=False, resume_from=path)
    with pytest.raises(ValueError, match="'checkpoint_steps' parameter"):
        AdversarialGenerator(clf, **SETTINGS).fit(x, y, steps=4, progress=False, checkpoint=path, checkpoint_steps=0)
