"""``netinvert reconstruct`` under torchrun: the generator method is data parallel, the methods that couple all
their candidates in one objective are refused before any process waits for another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netinvert.apps.reconstruct import ReconstructConfig, run_reconstruction
from netinvert.cli import main

CLI = [sys.executable, "-c", "import sys; from netinvert.cli import main; sys.exit(main())"]
ARGS = ["--threads", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def member_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "clf"
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--model-param", "hidden=[64]", "--epochs", "30",
                 "--subset", "100", "--subset-seed", "0", "--out", str(out), *ARGS]) == 0
    return out


@pytest.mark.parametrize("method", ["kkt", "per-sample"])
def test_coupled_methods_are_refused_under_torchrun(member_classifier, tmp_path, monkeypatch, method):
    """With torchrun's variables set (rank 1 never started), the refusal comes at once: no process group is
    initialised, so nothing waits for the missing rank, and nothing is written."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    config = ReconstructConfig(classifier=str(member_classifier), method=method, steps=2, device="cpu", threads=1)
    with pytest.raises(ValueError, match=f"--method {method} couples all its candidates .*only --method generator"):
        run_reconstruction(config, tmp_path / "rec", progress=False)
    assert not (tmp_path / "rec").exists()


@pytest.mark.slow  # three interpreters start torch: ~20 s on 2 shared cores
def test_torchrun_two_processes_reconstruct_and_rank0_writes(member_classifier, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", NETINVERT_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python", *CLI,
           "reconstruct", "--classifier", str(member_classifier), "--steps", "40", "--out", "rec", *ARGS]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout)  # one JSON document: rank 1 prints nothing
    assert printed["n"] == 100 and printed["steps"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]
    names = {p.name for p in (tmp_path / "rec").iterdir()}
    assert {"weights.safetensors", "reconstructions.safetensors", "metrics.json", "matches.png"} <= names
    assert "checkpoint.safetensors" not in names
    assert json.loads((tmp_path / "rec" / "metrics.json").read_text())["membership"] == printed["report"]
