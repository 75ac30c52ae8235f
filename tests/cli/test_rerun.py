"""``netinvert rerun RUN``: a seeded CPU run, replayed from the config.toml it recorded, gives identical weights.

Each test runs the commands in-process exactly as the console script does, and changes the working directory
between the run and its rerun, so that the recorded paths must not depend on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from netinvert.cli import main
from netinvert.cli._config import tomllib  # tomli on Python 3.10
from netinvert.runs import file_sha256

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, file_sha256(p)) for p in folder.rglob("*") if p.is_file()}


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> None:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 0, err


def test_rerun_of_a_seeded_training_run_gives_identical_weights(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    Path("train.toml").write_text('model = "mlp"\nmodel_param = ["hidden=[16]"]\nepochs = 3\nseed = 7\nthreads = 1\n')
    _run(capsys, "train", "--config", "train.toml", "--epochs", "1", "--device", "cpu", "--no-progress", "--out", "runs/clf")
    run = tmp_path / "a/runs/clf"
    recorded = tomllib.loads((run / "config.toml").read_text())
    assert recorded["command"] == "train" and recorded["epochs"] == 1 and recorded["seed"] == 7  # the flag won
    assert recorded["model_param"] == ["hidden=[16]"] and recorded["device"] == "cpu" and recorded["threads"] == 1
    assert not {"out", "force", "resume", "config", "no_progress"} & set(recorded)
    before = _snapshot(run)

    monkeypatch.chdir(tmp_path)  # elsewhere: the rerun must not depend on the working directory
    _run(capsys, "rerun", run)
    again = tmp_path / "a/runs/clf-rerun"  # a new sibling by default
    assert (again / "weights.safetensors").read_bytes() == (run / "weights.safetensors").read_bytes()
    assert (again / "config.toml").read_text() == (run / "config.toml").read_text()
    assert _snapshot(run) == before  # the original is never touched

    _run(capsys, "rerun", run, "--seed", "8")
    other = tmp_path / "a/runs/clf-rerun2"
    assert tomllib.loads((other / "config.toml").read_text())["seed"] == 8
    assert (other / "weights.safetensors").read_bytes() != (run / "weights.safetensors").read_bytes()


def test_config_is_in_the_staged_run_before_its_rename(tmp_path: Path, monkeypatch, capsys) -> None:
    """An interrupted run never appears without its config.toml: the file is part of the atomic rename."""
    from netinvert import runs

    staged: list[list[str]] = []
    commit = runs._commit

    def spy(staging: Path, out: Path) -> None:
        staged.append(sorted(p.name for p in staging.iterdir()))
        commit(staging, out)

    monkeypatch.setattr(runs, "_commit", spy)
    _run(capsys, "train", "--model", "mlp", "--model-param", "hidden=[8]", "--epochs", "1", "--device", "cpu",
         "--threads", "1", "--no-progress", "--out", tmp_path / "clf")
    assert len(staged) == 1 and "config.toml" in staged[0] and "card.json" in staged[0]
    assert (tmp_path / "clf/config.toml").is_file()


def test_rerun_of_an_inversion_run_gives_identical_weights(digits_cnn_run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    runs = tmp_path / "project/runs"
    shutil.copytree(digits_cnn_run, runs / "clf")
    verifiers = tmp_path / "cache/verifiers"  # outside the runs: recorded absolute, and trained once for both
    monkeypatch.chdir(tmp_path / "project")
    _run(capsys, "invert", "--classifier", "runs/clf", "--out", "runs/inv", "--steps", "4", "--width", "8",
         "--batch-size", "20", "-n", "4", "--verifiers", verifiers, "--verifier-epochs", "1", "--loss", "ce:1",
         "--loss", "bn:0.2", "--input-shape", "1,8,8", "--no-progress", "--device", "cpu", "--threads", "1", "--seed", "5")
    recorded = tomllib.loads((runs / "inv/config.toml").read_text())
    assert recorded["classifier"] == "../clf" and recorded["verifiers"] == str(verifiers)
    assert recorded["loss"] == ["ce:1", "bn:0.2"] and recorded["input_shape"] == [1, 8, 8] and recorded["steps"] == 4

    moved = tmp_path / "moved"
    shutil.move(tmp_path / "project", moved)  # a tree of runs moved as a whole still reruns
    monkeypatch.chdir(tmp_path)
    _run(capsys, "rerun", moved / "runs/inv", "--out", "elsewhere/inv2")
    assert file_sha256(tmp_path / "elsewhere/inv2/weights.safetensors") == file_sha256(moved / "runs/inv/weights.safetensors")
    assert tomllib.loads((tmp_path / "elsewhere/inv2/config.toml").read_text())["classifier"] == str(moved / "runs/clf")


def test_rerun_refuses_what_it_cannot_reproduce(tmp_path: Path, capsys) -> None:
    def fails(*argv: object) -> str:
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("netinvert: error: ") and err.count("\n") == 1
        return err

    run = tmp_path / "run"
    run.mkdir()
    assert "does not exist" in fails("rerun", tmp_path / "nothing")
    assert f"{run} holds no config.toml, so there is nothing to rerun" in fails("rerun", run)
    (run / "config.toml").write_text('epochs = 1\n')
    assert "must name the command it was written for" in fails("rerun", run)
    (run / "config.toml").write_text('command = "rerun"\n')
    assert "must name the command it was written for" in fails("rerun", run)
    (run / "config.toml").write_text('command = "bnn fly"\n')
    assert "names the command 'netinvert bnn fly', which this version of netinvert does not have" in fails("rerun", run)
    (run / "config.toml").write_text('command = "datasets"\n')
    assert "writes no run folder" in fails("rerun", run)
    (run / "config.toml").write_text('command = "bnn train"\nepochs = 1\n')
    assert "'netinvert bnn train' takes no --device" in fails("rerun", run, "--device", "cpu")
    for out in (run, run / "inside"):
        assert "a rerun never writes into the run it reproduces" in fails("rerun", run, "--out", out, "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and [p.name for p in run.iterdir()] == ["config.toml"]
