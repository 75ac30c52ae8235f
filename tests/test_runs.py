"""Run folders: atomic files, JSON without NaN, weights round trips, and runs that appear whole or not at all."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from netinvert.exceptions import RunExistsError, RunFormatError, RunLockedError, UnsafeCheckpointError
from netinvert.runs import (
    atomic_write_bytes,
    check_out,
    drop_seconds,
    file_sha256,
    jsonable,
    load_weights,
    partial_dir,
    read_card,
    read_json,
    save_weights,
    staged_run,
    write_card,
    write_json,
)


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_atomic_write_leaves_only_the_file(tmp_path: Path) -> None:
    target = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"abc")
    assert target.read_bytes() == b"abc"
    assert _siblings(target) == ["a.bin"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_json_round_trip_converts_tensors_numpy_paths_and_nan(tmp_path: Path) -> None:
    obj = {"t": torch.tensor([1.5, 2.0]), "n": np.float32(0.25), "a": np.arange(3), "p": Path("x/y"),
           "nan": float("nan"), "inf": [math.inf], 3: (1, 2)}
    write_json(tmp_path / "m.json", obj)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON readers must accept it
    assert read_json(tmp_path / "m.json") == {"t": [1.5, 2.0], "n": 0.25, "a": [0, 1, 2], "p": "x/y", "nan": None,
                                              "inf": [None], "3": [1, 2]}


def test_jsonable_uses_to_dict() -> None:
    class Result:
        def to_dict(self) -> dict:
            return {"x": torch.tensor(1)}

    assert jsonable([Result()]) == [{"x": 1}]


def test_drop_seconds_keeps_the_answer_only() -> None:
    answer = {"label": 3, "solve_seconds": 1.5, "rows": [{"seconds": 0.1, "flips": np.int64(2)}], "p": float("nan")}
    assert drop_seconds(answer) == {"label": 3, "rows": [{"flips": 2}], "p": None}


def test_read_json_and_card_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RunFormatError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="Run folder"):
        read_card(tmp_path / "nope")
    run = tmp_path / "run"
    write_card(run, {"kind": "x"})
    card = read_card(run, required=("kind",))
    assert card["kind"] == "x" and card["versions"]["torch"] == torch.__version__
    with pytest.raises(RunFormatError, match="lacks seed"):
        read_card(run, required=("kind", "seed"))
    (run / "card.json").write_text("[1, 2]")
    with pytest.raises(RunFormatError, match="JSON object"):
        read_card(run)


def test_weights_round_trip_and_corruption(tmp_path: Path) -> None:
    state = {"w": torch.randn(3, 4), "b": torch.arange(4)}
    path = save_weights(tmp_path / "weights.safetensors", state)
    loaded = load_weights(path)
    assert set(loaded) == {"w", "b"} and torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(UnsafeCheckpointError, match="not a readable safetensors"):
        load_weights(path)


def test_staged_run_appears_whole(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_run(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out and not out.exists()  # nothing visible while writing
        (tmp / "card.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["card.json"]
    assert _siblings(out) == ["run"]  # no staging folder or lock left behind


def test_staged_run_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with staged_run(out) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not out.exists()
    assert _siblings(out) == []


def test_a_refused_resume_keeps_the_checkpoint_it_refused(tmp_path: Path) -> None:
    from netinvert.exceptions import ResumeRefusedError

    out = tmp_path / "run"
    with pytest.raises(ResumeRefusedError):
        with staged_run(out, keep_on_interrupt=True) as tmp:
            (tmp / "checkpoint.safetensors").write_bytes(b"state")
            raise ResumeRefusedError("written on the CPU; resume it with --device cpu")
    staging = partial_dir(out)
    assert (staging / "checkpoint.safetensors").read_bytes() == b"state" and not out.exists()
    with pytest.raises(RuntimeError):  # any other failure still leaves nothing
        with staged_run(out, resume=True, keep_on_interrupt=True):
            raise RuntimeError("boom")
    assert not staging.exists()


def test_interrupt_removes_the_partial_run_of_work_that_cannot_resume(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with staged_run(tmp_path / "run") as tmp:
            (tmp / "a").write_text("1")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_interrupt_keeps_the_partial_run_for_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with staged_run(out, keep_on_interrupt=True) as tmp:
            (tmp / "checkpoint.pt").write_bytes(b"step 5")
            raise KeyboardInterrupt
    assert not out.exists() and partial_dir(out).is_dir()  # out is not a half run; the checkpoint waits
    with staged_run(out, resume=True) as tmp:
        assert (tmp / "checkpoint.pt").read_bytes() == b"step 5"
        (tmp / "card.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "checkpoint.pt"]
    with pytest.raises(KeyboardInterrupt):
        with staged_run(tmp_path / "b", keep_on_interrupt=True) as tmp:
            (tmp / "checkpoint.pt").write_bytes(b"x")
            raise KeyboardInterrupt
    with staged_run(tmp_path / "b") as tmp:  # without resume a left-over partial run is cleared
        assert list(tmp.iterdir()) == []
    assert _siblings(out) == ["b", "run"]


def test_existing_run_refused_unless_force_and_kept_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / "card.json").write_text("{}")
    with pytest.raises(RunExistsError, match="--force"):
        with staged_run(out):
            pytest.fail("the body must not run")
    with pytest.raises(RuntimeError):
        with staged_run(out, force=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "old.txt"]  # the old run survives a failed replacement
    with staged_run(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert _siblings(out) == ["run"]


def test_empty_existing_folder_is_used(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with staged_run(out) as tmp:
        (tmp / "a").write_text("1")
    assert (out / "a").read_text() == "1"


@pytest.mark.parametrize("where", ["same", "inside", "holds"])
def test_out_overlapping_an_input_is_refused(tmp_path: Path, where: str) -> None:
    inp = tmp_path / "clf"
    inp.mkdir()
    (inp / "card.json").write_text("{}")
    out = {"same": inp, "inside": inp / "sub", "holds": tmp_path}[where]
    with pytest.raises(ValueError, match="overlaps the input"):
        check_out(out, force=True, inputs=[inp])
    assert (inp / "card.json").read_text() == "{}"


def test_out_that_is_or_lies_below_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunExistsError, match="is a file"):
        check_out(f)
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_out(f / "run")
    assert check_out(tmp_path / "a" / "b" / "run") == (tmp_path / "a" / "b" / "run").absolute()
    assert not (tmp_path / "a").exists()  # checking creates nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_parent_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="no permission"):
            check_out(ro / "run")
    finally:
        ro.chmod(0o700)


_HOLDER = """
import sys, time
from netinvert.runs import staged_run
with staged_run(sys.argv[1]) as tmp:
    (tmp / "card.json").write_text("{}")
    print("holding", flush=True)
    time.sleep(60)
"""


def test_a_second_process_is_refused_and_a_dead_writers_lock_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            with staged_run(out):
                pytest.fail("the body must not run")
        assert partial_dir(out).is_dir()  # the refused writer left the holder's work alone
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the lock file stays behind
        holder.wait()
    assert (tmp_path / ".run.lock").exists() and not out.exists()
    with staged_run(out) as tmp:  # the kernel released the dead writer's lock: it is taken over
        (tmp / "card.json").write_text("{}")
    assert (out / "card.json").is_file() and _siblings(out) == ["run"]


def test_staged_run_nested_outputs_are_refused_while_writing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_run(out) as tmp:
        (tmp / "a").write_text("1")
        with pytest.raises(RunLockedError):
            with staged_run(out):
                pass
    assert json.loads(json.dumps(sorted(p.name for p in out.iterdir()))) == ["a"]


def test_force_never_replaces_the_working_directory_or_above(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(notes)
    for where in (notes, tmp_path, Path(".")):  # the working directory, one above it
        with pytest.raises(RunExistsError, match="working directory"):
            check_out(where, force=True)
    assert (notes / "thesis.tex").read_text() == "years of work"


def test_signals_wait_for_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    out = tmp_path / "run"
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *a: seen.append(out.is_dir()))
    real_replace = os.replace

    def replace_then_signal(a, b):  # SIGTERM arrives between the renames of the commit
        real_replace(a, b)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        with staged_run(out) as tmp:
            (tmp / "card.json").write_text("{}")
            monkeypatch.setattr(os, "replace", replace_then_signal)
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGTERM, previous)
    assert seen == [True]  # delivered only once the run was in place
    assert (out / "card.json").is_file()


def test_resume_point_ignores_where_a_run_computes_but_not_what_it_is(tmp_path: Path) -> None:
    import torch

    from netinvert._checkpoint import CHECKPOINT_NAME, resume_point, write_checkpoint

    out = tmp_path / "run"
    partial_dir(out).mkdir()
    info = {"config": {"device": "auto", "threads": 1, "lr": 0.1}, "classifier_sha256": "ab"}
    write_checkpoint(partial_dir(out) / CHECKPOINT_NAME, {"w": torch.zeros(1)}, {"step": 3, "info": info})
    moved = {"config": {"device": "cpu", "threads": 2, "lr": 0.1}, "classifier_sha256": "ab"}
    assert resume_point(out, moved, resume=True) == partial_dir(out) / CHECKPOINT_NAME
    with pytest.raises(RunFormatError, match="another classifier_sha256, config.lr; .* --force"):
        resume_point(out, {"config": {"device": "auto", "threads": 1, "lr": 0.2}, "classifier_sha256": "cd"}, resume=True)
    with pytest.raises(RunExistsError, match="pass --resume"):
        resume_point(out, info, resume=False)
    assert resume_point(out, info, resume=False, force=True) is None
