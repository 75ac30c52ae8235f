"""``netinvert prior --resume``: an interrupted image-prior training continues from its checkpoint to the weights an
uninterrupted one ends with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from netinvert._checkpoint import CHECKPOINT_NAME, read_checkpoint
from netinvert.cli import main
from netinvert.exceptions import RunExistsError, RunFormatError
from netinvert.inversion import PriorRunConfig, run_image_prior
from netinvert.inversion import _prior
from netinvert.runs import load_weights, partial_dir, read_card

CONFIG = PriorRunConfig(dataset="digits", code_dim=4, epochs=3, seed=0, device="cpu", threads=1)
LAUNCH = [sys.executable, "-c", "import sys; from netinvert.cli import main; sys.exit(main())"]


def _same_weights(a, b) -> bool:
    wa, wb = load_weights(a / "weights.safetensors"), load_weights(b / "weights.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_image_prior(CONFIG, tmp_path_factory.mktemp("prior") / "ref", progress=False).run_dir


@pytest.mark.parametrize("interrupt_at", [1, 7, 15])  # the first batch (nothing saved yet), mid-epoch, inside the second epoch
def test_an_interrupted_prior_resumes_to_the_weights_of_an_uninterrupted_one(reference, tmp_path, monkeypatch, interrupt_at) -> None:
    forward, calls = _prior._Encoder.forward, []

    def interrupting(self, x):
        calls.append(1)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return forward(self, x)

    out = tmp_path / "prior"
    monkeypatch.setattr(_prior._Encoder, "forward", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_image_prior(CONFIG, out, progress=False, checkpoint_steps=4, checkpoint_seconds=None)
    monkeypatch.setattr(_prior._Encoder, "forward", forward)
    tensors, state = read_checkpoint(partial_dir(out) / CHECKPOINT_NAME)
    assert state["batch"] == interrupt_at - 1 and state["info"]["config"] == CONFIG.to_dict()
    assert {"rng.torch", "rng.generator", "rng.numpy"} <= tensors.keys() and any(k.startswith("decoder.") for k in tensors)
    assert ("order" in tensors) == ((interrupt_at - 1) % 11 != 0)  # mid-epoch: the epoch's shuffled order is kept
    assert not out.exists()
    with pytest.raises(RunFormatError, match=r"belongs to a run with another config\.epochs; rerun with the options of that run"):
        run_image_prior(PriorRunConfig(**{**CONFIG.to_dict(), "epochs": 4}), out, resume=True, progress=False)
    result = run_image_prior(CONFIG, out, resume=True, progress=False)
    assert _same_weights(out, reference) and read_card(out)["resumed"] is True
    assert result.test_mse == read_card(reference)["train"]["test_mse"]
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "samples.png", "weights.safetensors"]
    assert not partial_dir(out).exists()
    with pytest.raises(RunExistsError, match="already complete; use --force"):
        run_image_prior(CONFIG, out, resume=True, progress=False)


def test_a_sigkilled_prior_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path) -> None:
    epochs = 20
    args = ["prior", "--dataset", "digits", "--code-dim", "4", "--epochs", str(epochs), "--seed", "0", "--device", "cpu",
            "--threads", "1", "--no-progress", "--checkpoint-steps", "20", "--out", str(tmp_path / "killed")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NETINVERT_THREADS": "1"}
    proc = subprocess.Popen([*LAUNCH, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = partial_dir(tmp_path / "killed") / CHECKPOINT_NAME
    deadline = time.monotonic() + 60
    while not checkpoint.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no checkpoint appeared (exit {proc.poll()}): {proc.communicate()[1]}")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "killed").exists()
    reference = run_image_prior(PriorRunConfig(**{**CONFIG.to_dict(), "epochs": epochs}), tmp_path / "ref", progress=False).run_dir
    assert main([*args, "--resume"]) == 0
    assert _same_weights(tmp_path / "killed", reference)
