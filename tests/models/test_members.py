"""Member-tracked training: a subset run records its members and a disjoint non-member set of the same split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from netinvert.cli import main
from netinvert.data import load_dataset
from netinvert.exceptions import RunFormatError, UnsafeCheckpointError
from netinvert.models import ClassifierRunConfig, TrainConfig, load_members, run_training
from netinvert.runs import save_weights

ARGS = ["train", "--dataset", "digits", "--model", "mlp", "--model-param", "hidden=[16]", "--epochs", "1", "--threads", "1",
        "--device", "cpu", "--no-progress"]


def test_balanced_members_and_non_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main([*ARGS, "--subset", "105", "--subset-seed", "3", "--out", str(out)]) == 0
    capsys.readouterr()
    members, non_members = load_members(out)
    y = load_dataset("digits").y_train
    assert len(members) == len(non_members) == 105 and len(set(members.tolist())) == 105
    assert not set(members.tolist()) & set(non_members.tolist())
    counts = torch.bincount(y[members], minlength=10)
    assert sorted(counts.tolist()) == [10] * 5 + [11] * 5  # 105 = 10 per class, 5 classes get one more
    assert torch.equal(counts, torch.bincount(y[non_members], minlength=10))  # the same class counts
    card = json.loads((out / "card.json").read_text())
    assert card["members"]["n"] == 105 and card["members"]["balanced"] is True and card["n_train"] == 105
    assert card["config"]["subset_seed"] == 3


def test_unbalanced_subset_is_the_seeded_draw_of_dataset_subset(tmp_path: Path) -> None:
    config = ClassifierRunConfig(dataset="digits", model="mlp", model_params={"hidden": [8]}, train=TrainConfig(epochs=1),
                                 subset=50, seed=4, device="cpu", threads=1)
    run_training(config, tmp_path / "run", progress=False)
    members, non_members = load_members(tmp_path / "run")
    data = load_dataset("digits")
    assert torch.equal(data.x_train[members], data.subset(n_train=50, seed=4).x_train)  # same images, same order
    assert len(non_members) == 50 and not set(members.tolist()) & set(non_members.tolist())


def test_members_refusals(tmp_path: Path, digits_cnn_run: Path) -> None:
    with pytest.raises(RunFormatError, match="records no members"):
        load_members(digits_cnn_run)
    with pytest.raises(ValueError, match="'subset_seed' parameter of ClassifierRunConfig"):
        ClassifierRunConfig(subset_seed=1)
    with pytest.raises(ValueError, match="too few for 5000 members"):
        load_dataset("digits").draw_members(5000, 0)
    config = ClassifierRunConfig(dataset="digits", model="mlp", model_params={"hidden": [8]}, train=TrainConfig(epochs=1),
                                 subset=20, subset_seed=0, device="cpu", threads=1)
    run_training(config, tmp_path / "run", progress=False)
    save_weights(tmp_path / "run" / "members.safetensors", {"members": torch.arange(20), "non_members": torch.arange(20, 40)})
    with pytest.raises(UnsafeCheckpointError, match="sha256 differs"):
        load_members(tmp_path / "run")
