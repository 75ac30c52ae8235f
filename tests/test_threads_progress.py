"""Thread-count choice and progress output that suits terminals and logs."""

from __future__ import annotations

import io
import logging
import sys

import pytest
import torch

from netinvert._progress import PROGRESS_LOGGER, progress_bar
from netinvert._threads import ENV_THREADS, default_threads, resolve_threads, set_threads


@pytest.fixture(autouse=True)
def _keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_does_not_take_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_THREADS, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(2)))
    assert default_threads() == 1 and resolve_threads() == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert resolve_threads() == 8
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert resolve_threads() == 1


def test_explicit_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_THREADS, "3")
    assert resolve_threads() == 3
    assert resolve_threads(2) == 2
    assert set_threads(2) == 2 and torch.get_num_threads() == 2


@pytest.mark.parametrize("env, match", [("x", "NETINVERT_THREADS must be a positive int"), ("0", "in \\[1, inf\\)")])
def test_bad_environment_is_refused(monkeypatch: pytest.MonkeyPatch, env: str, match: str) -> None:
    monkeypatch.setenv(ENV_THREADS, env)
    with pytest.raises(ValueError, match=match):
        resolve_threads()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_threads_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="'threads' parameter"):
        resolve_threads(bad)  # type: ignore[arg-type]


def test_progress_in_a_log_is_a_few_lines(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    bar = progress_bar(total=500, desc="invert", interval_s=3600)
    for _ in range(500):
        bar.update(1)
        bar.set_postfix(loss="0.1")
    bar.close()
    bar.close()  # closing twice logs once
    assert sys.stderr.getvalue() == ""  # no carriage-return bar in the log
    lines = [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]
    assert len(lines) == 1 and lines[0].startswith("invert: 500/500 (100%)") and "loss=0.1" in lines[0]


def test_progress_logs_once_per_interval(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    clock = iter(range(0, 1000, 10))  # each call to the clock advances 10 s
    monkeypatch.setattr("netinvert._progress.time.monotonic", lambda: next(clock))
    with progress_bar(total=None, desc="count", interval_s=25) as bar:
        for _ in range(6):
            bar.update(1)
    assert len([r for r in caplog.records if r.name == PROGRESS_LOGGER]) == 3  # at 30 s, 60 s, and the close


def test_progress_on_a_terminal_is_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm.auto import tqdm

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    bar = progress_bar(total=3, desc="train")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    silent = progress_bar(total=3, enabled=False)
    assert silent.disable


def test_a_workflow_gives_torch_its_thread_count_back(tmp_path) -> None:
    from netinvert.models import ClassifierRunConfig, TrainConfig, run_training

    torch.set_num_threads(2)
    result = run_training(ClassifierRunConfig(dataset="digits", model="mlp", model_params={"hidden": [8]},
                                              train=TrainConfig(epochs=1), subset=100, device="cpu", threads=1),
                          tmp_path / "run", progress=False)
    assert torch.get_num_threads() == 2  # restored
    import json

    assert json.loads((result.run_dir / "card.json").read_text())["threads"] == 1  # what the run used
