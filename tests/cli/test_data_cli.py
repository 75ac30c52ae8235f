"""``netinvert datasets``: the availability table and its JSON form."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from netinvert.cli import main


def test_datasets_table_lists_every_dataset(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NETINVERT_DATA", str(tmp_path))
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.split("\n\n")[0].splitlines()
    assert header.split()[:2] == ["name", "available"]
    by_name = {r.split()[0]: r.split() for r in rows}
    assert {"digits", "fashion-mnist", "mnist", "cifar10", "svhn", "image-folder"} <= set(by_name)
    assert by_name["digits"][1:4] == ["yes", "1x8x8", "10"]
    assert by_name["mnist"][1:4] == ["no", "1x28x28", "10"]
    assert by_name["cifar10"][1:3] == ["no", "3x32x32"]
    assert "Not available:" in out and "mnist: MNIST files not found" in out


def test_datasets_json_with_a_user_folder(capsys, tmp_path):
    for cls in ("ants", "bees"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(tmp_path / cls / "a.png")
    assert main(["datasets", "--json", "--data-root", str(tmp_path), "image-folder", "svhn"]) == 0
    got = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert got["image-folder"] == {
        "name": "image-folder", "available": True, "where": str(tmp_path), "hint": "",
        "input_shape": [3, 6, 7], "n_classes": 2,
    }
    assert got["svhn"]["available"] is False and "train_32x32.mat" in got["svhn"]["hint"]


def test_unknown_dataset_is_a_clean_error(capsys):
    assert main(["datasets", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netinvert: error: Unknown dataset 'imagenet'") and "Traceback" not in err
