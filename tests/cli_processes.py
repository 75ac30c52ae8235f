"""Run netinvert commands as real processes (to kill them) or in-process (to read their JSON), for the resume tests."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from netinvert._checkpoint import CHECKPOINT_NAME
from netinvert.cli import main
from netinvert.runs import load_weights, partial_dir

LAUNCH = [sys.executable, "-c", "import sys; from netinvert.cli import main; sys.exit(main())"]


def start(args: list[str]) -> subprocess.Popen:
    """A real ``netinvert ARGS`` process on one thread, its output piped."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NETINVERT_THREADS": "1"}
    return subprocess.Popen([*LAUNCH, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, out: Path, timeout: float = 60.0) -> Path:
    """Poll until the run of ``out`` has written a checkpoint into its partial folder; fail if the process ends first."""
    path = partial_dir(out) / CHECKPOINT_NAME
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no checkpoint appeared (exit {proc.poll()}): {proc.communicate()[1]}")
        time.sleep(0.01)
    return path


def kill_after_checkpoint(args: list[str], out: Path, timeout: float = 60.0) -> Path:
    """Start ``netinvert ARGS`` and SIGKILL it once the run of ``out`` has a checkpoint; the killed run must have left no
    ``out``. Returns the checkpoint's path."""
    proc = start(args)
    checkpoint = wait_for_checkpoint(proc, out, timeout=timeout)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    return checkpoint


def assert_same_files_and_weights(got: Path, want: Path) -> None:
    """Two run folders hold the same file names and bit-identical ``weights.safetensors``."""
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in want.iterdir())
    a, b = load_weights(got / "weights.safetensors"), load_weights(want / "weights.safetensors")
    assert a.keys() == b.keys()
    for name in b:
        assert torch.equal(a[name], b[name]), name


def run(args: list[str]) -> tuple[int, str]:
    """``netinvert ARGS`` in this process: exit code and what it printed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(args)
    return code, buf.getvalue()
