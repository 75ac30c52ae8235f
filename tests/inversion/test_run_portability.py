"""Issue 13.4 and 13.9: an inversion run finds its classifier from any working directory and refuses a replaced one;
``netinvert invert`` inverts a TorchScript model file, taking its input shape and class count from ``--dataset``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from netinvert.cli import main
from netinvert.exceptions import UnsafeCheckpointError
from netinvert.inversion import InversionRunConfig, run_inversion, run_sampling
from netinvert.models import build_model, save_classifier
from netinvert.runs import file_sha256, read_card

TINY = ["--steps", "4", "--width", "8", "--batch-size", "20", "-n", "2", "--verifier-epochs", "1", "--no-progress",
        "--device", "cpu", "--threads", "1"]


def _cli(args: list[str]) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(args)
    return code, buf.getvalue()


def _other_classifier() -> nn.Module:
    torch.manual_seed(1)
    return build_model("cnn", input_shape=(1, 8, 8), n_classes=10, channels=[16, 32], hidden=64)


@pytest.fixture()
def inverted(digits_cnn, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """``work/clf`` (the digits CNN, no dataset in its card: no verifiers to train) inverted from ``work`` into ``runs/inv``."""
    work = tmp_path / "work"
    save_classifier(digits_cnn, work / "clf")
    monkeypatch.chdir(work)
    config = InversionRunConfig(classifier="clf", steps=3, width=8, batch_size=20, n_per_class=2, device="cpu", threads=1)
    result = run_inversion(config, "runs/inv", progress=False)
    return work, result.run_dir


def test_the_card_records_the_classifier_relative_to_the_run_with_its_sha256(inverted) -> None:
    work, run = inverted
    card = read_card(run)
    assert card["classifier_run"] == "../../clf" and card["classifier_path"] == str(work / "clf")
    assert card["classifier_sha256"] == file_sha256(work / "clf" / "weights.safetensors")


def test_sample_from_another_directory_uses_the_recorded_classifier_not_one_at_the_same_relative_path(
        inverted, tmp_path, monkeypatch, capsys) -> None:
    work, run = inverted
    elsewhere = tmp_path / "elsewhere"
    save_classifier(_other_classifier(), elsewhere / "clf")  # a decoy where the old cwd-relative path would point
    monkeypatch.chdir(elsewhere)
    code, printed = _cli(["sample", str(run), "--label", "3", "-n", "2", "--out", "s", "--device", "cpu", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    card = read_card(elsewhere / "s")
    assert card["classifier_path"] == str(work / "clf") and card["classifier_matches_run"] is True
    assert card["classifier_sha256"] == read_card(run)["classifier_sha256"]
    # the run folder moved: the relative path breaks, the recorded absolute one is tried (and the sha256 still checked)
    moved = tmp_path / "moved" / "deep" / "inv"
    moved.parent.mkdir(parents=True)
    run.rename(moved)
    assert run_sampling(moved, 3, 2, elsewhere / "s2", device="cpu").n == 2


def test_a_classifier_retrained_at_the_recorded_path_is_refused(inverted, tmp_path, monkeypatch, capsys) -> None:
    work, run = inverted
    original = tmp_path / "original"
    (work / "clf").rename(original)
    save_classifier(_other_classifier(), work / "clf")  # retrained in place: same path, other weights
    monkeypatch.chdir(tmp_path)
    code = main(["sample", str(run), "--label", "3", "-n", "2", "--out", "s", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{work / 'clf'} is not the classifier {run} inverted: its weights' sha256 is" in err
    assert "replaced or retrained since; pass the original with --classifier" in err and "--allow-other-classifier" in err
    assert not (tmp_path / "s").exists()
    with pytest.raises(UnsafeCheckpointError, match="is not the classifier .* inverted"):  # an explicit override is checked too
        run_sampling(run, 3, 2, tmp_path / "s", classifier=work / "clf", device="cpu")
    assert run_sampling(run, 3, 2, tmp_path / "s", classifier=original, device="cpu").n == 2  # the original, moved: fine
    with pytest.warns(UserWarning, match="is not the classifier .* inverted \\(allow_other_classifier\\)"):
        code, _ = _cli(["sample", str(run), "--label", "3", "-n", "2", "--out", "t", "--device", "cpu", "--allow-other-classifier"])
    assert code == 0 and read_card(tmp_path / "t")["classifier_matches_run"] is False


# ---------------------------------------------------------------------------------------------------------- TorchScript
class _UnusualNet(nn.Module):
    """Its own normalisation (per-image standardisation with a learnt gain), a depthwise-separable conv, GELU, adaptive pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pointwise = nn.Conv2d(16, 32, 1)
        self.act = nn.GELU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True) + 1e-3
        x = self.gain * (x - mean) / std
        x = self.act(self.stem(x))
        x = self.act(self.pointwise(self.depthwise(x)))
        return self.head(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module")
def scripted(digits, tmp_path_factory) -> Path:
    """The net trained briefly on digits, scripted and saved with no card beside it."""
    torch.manual_seed(0)
    net = _UnusualNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(4):
        for i in range(0, len(digits.x_train), 64):
            loss = nn.functional.cross_entropy(net(digits.x_train[i:i + 64]), digits.y_train[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = float((net.eval()(digits.x_test).argmax(1) == digits.y_test).float().mean())
    assert accuracy > 0.5  # chance is 0.1
    path = tmp_path_factory.mktemp("torchscript") / "m.pt"
    torch.jit.script(net).save(str(path))
    return path


def test_invert_a_torchscript_file_with_shape_and_classes_from_the_dataset_then_sample(scripted, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, printed = _cli(["invert", "--classifier", str(scripted), "--dataset", "digits", "--out", "inv",
                          "--verifiers", str(tmp_path / "verifiers"), *TINY])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "inv"
    assert {"card.json", "weights.safetensors", "metrics.json", "samples.png", "history.json"} <= {p.name for p in out.iterdir()}
    card, metrics = read_card(out), json.loads((out / "metrics.json").read_text())
    assert card["classifier_format"] == "torchscript" and card["classifier_sha256"] == file_sha256(scripted)
    assert card["classifier"]["input_shape"] == [1, 8, 8] and card["classifier"]["n_classes"] == 10
    assert 0.0 <= metrics["validity"] <= 1.0 and json.loads(printed)["validity"] == metrics["validity"]
    assert metrics["verifier_accuracy"] is not None  # the dataset was used for the full metrics too
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    code, printed = _cli(["sample", str(out), "--label", "5", "-n", "3", "--out", "s", "--device", "cpu"])
    assert code == 0 and json.loads(printed)["n"] == 3
    assert np.load(tmp_path / "other" / "s" / "samples.npz")["x"].shape == (3, 1, 8, 8)


def test_invert_a_torchscript_file_without_a_dataset_names_flags_that_exist(scripted, tmp_path, capsys) -> None:
    code = main(["invert", "--classifier", str(scripted), "--out", str(tmp_path / "a"), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "--input-shape C,H,W and --n-classes, or --dataset" in err and not (tmp_path / "a").exists()
    code, printed = _cli(["invert", "--classifier", str(scripted), "--input-shape", "1,8,8", "--n-classes", "10",
                          "--out", str(tmp_path / "b"), *TINY])
    assert code == 0 and 0.0 <= json.loads(printed)["validity"] <= 1.0
    assert read_card(tmp_path / "b")["config"]["input_shape"] == [1, 8, 8]
    with pytest.raises(SystemExit) as exc:  # argparse's own refusal
        main(["invert", "--classifier", str(scripted), "--input-shape", "1,8", "--out", str(tmp_path / "c"), *TINY])
    assert exc.value.code == 2 and "argument --input-shape: must be C,H,W" in capsys.readouterr().err
    code = main(["invert", "--classifier", str(scripted), "--n-classes", "5", "--dataset", "digits", "--out", str(tmp_path / "d"),
                 *TINY])
    assert code == 2 and "pass the classifier's own --dataset" in capsys.readouterr().err
