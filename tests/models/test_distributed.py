"""Classifier training under torchrun: two gloo processes on the CPU train what one process trains.

``batch_size`` is the global batch and each rank takes an equal, DistributedSampler-style share of
it, so with no dropout (no per-rank randomness) two processes follow one process's trajectory up to
the order of floating-point sums: that makes "within noise" a tight check rather than a loose one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from netinvert._distributed import SINGLE, World, pad, process_group, shard
from netinvert.models import ClassifierRunConfig, TrainConfig, run_training
from netinvert.models._train import check_world
from netinvert.runs import load_weights

#: 1280 class-balanced digits (20 full global batches of 64), an MLP without dropout: a few seconds.
CONFIG = ClassifierRunConfig(dataset="digits", model="mlp", model_params={"hidden": [32], "dropout": 0.0},
                             train=TrainConfig(epochs=3, batch_size=64, lr=3e-3), subset=1280, subset_seed=0,
                             seed=0, device="cpu", threads=1)

LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python",
          sys.executable, "-c", "import sys; from netinvert.cli import main; sys.exit(main())"]


def _train_args(out: Path) -> list[str]:
    return ["train", "--dataset", "digits", "--model", "mlp", "--model-param", "hidden=[32]", "--model-param",
            "dropout=0.0", "--epochs", "3", "--batch-size", "64", "--lr", "3e-3", "--subset", "1280",
            "--subset-seed", "0", "--seed", "0", "--device", "cpu", "--threads", "1", "--no-progress", "--out", str(out)]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", NETINVERT_THREADS="1")
    return subprocess.run([*LAUNCH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("n,world_size,bs", [(10, 3, 6), (12, 2, 4), (7, 2, 2), (5, 4, 8)])
def test_shards_are_distributed_samplers_split(n, world_size, bs):
    """Each rank's batches, end to end, are DistributedSampler's indices for it (drop_last=False)."""
    perm = torch.arange(n)
    for rank in range(world_size):
        world = World(world_size, rank, rank, "gloo")
        padded = pad(perm, world)
        mine = torch.cat([shard(padded[i : i + bs], world) for i in range(0, len(padded), bs)])
        sampler = DistributedSampler(list(range(n)), num_replicas=world_size, rank=rank, shuffle=False)
        assert mine.tolist() == list(sampler)


def test_one_process_is_untouched():
    """Without torchrun's variables the single world is used and nothing is padded or split."""
    perm = torch.randperm(11)
    assert torch.equal(shard(pad(perm, SINGLE), SINGLE), perm)
    with process_group(torch.device("cpu")) as (world, device):
        assert world == SINGLE and device == torch.device("cpu")


def test_a_global_batch_the_ranks_cannot_share_is_refused():
    with pytest.raises(ValueError, match="must be a multiple of 2. Got 63"):
        check_world(TrainConfig(batch_size=63), World(2, 0, 0, "gloo"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU exists")
def test_cuda_without_a_gpu_is_refused_before_any_process_group(tmp_path, monkeypatch):
    """``--device cuda`` under torchrun's variables, on a machine without a GPU: the clear single-process
    error, raised before the process group would wait for its other ranks."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="device='cuda' was asked for but no CUDA GPU is available"):
        run_training(ClassifierRunConfig(model="mlp", device="cuda"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # three processes start torch: 15-30 s on 2 shared cores
def test_torchrun_two_processes_train_what_one_trains(tmp_path):
    """``torchrun --nproc_per_node 2 netinvert train``: rank 0 alone writes one run (no checkpoint left,
    one JSON printed) whose weights and accuracy match a one-process run of the same config."""
    one = run_training(CONFIG, tmp_path / "one" / "run", progress=False)
    (tmp_path / "two").mkdir()
    done = _torchrun(_train_args(Path("run")), tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["run"]  # no partial folder, no second run
    names = {p.name for p in (tmp_path / "two" / "run").iterdir()}
    assert {"card.json", "metrics.json", "weights.safetensors"} <= names and "checkpoint.safetensors" not in names
    printed = json.loads(done.stdout)  # exactly one JSON document: rank 1 prints nothing
    card = json.loads((tmp_path / "two" / "run" / "card.json").read_text())
    assert card["distributed"] == {"world_size": 2, "backend": "gloo", "batch_per_process": 32}
    assert printed["test_accuracy"] == pytest.approx(card["test_accuracy"])
    assert abs(card["test_accuracy"] - one.test_accuracy) <= 0.02, (card["test_accuracy"], one.test_accuracy)
    a, b = load_weights(one.run_dir / "weights.safetensors"), load_weights(tmp_path / "two" / "run" / "weights.safetensors")
    assert a.keys() == b.keys()
    # the same trajectory up to summation order (measured: 3e-8), far closer than two seeds (~0.1 apart)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


@pytest.mark.slow
def test_torchrun_refusal_on_rank0_stops_every_rank(tmp_path):
    """An ``--out`` that holds files is refused on rank 0 before training, and rank 1 stops too
    rather than waiting for a collective call that would never come."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    done = _torchrun(_train_args(Path("run")), tmp_path)
    assert done.returncode != 0
    assert "Rank 0 refused the run: RunExistsError" in done.stderr
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
