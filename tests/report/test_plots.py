"""Figures a person looks at: the per-class grid places each image in its class row; curves need a history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from netinvert.report import image_grid, save_class_grid, save_loss_curves


def test_image_grid_places_each_image() -> None:
    images = torch.zeros(6, 1, 2, 3)
    for i in range(6):
        images[i] = (i + 1) / 10
    grid = image_grid(images, n_rows=2, pad=1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
    # image 4 (value 0.5) is row 1, column 1
    assert np.allclose(grid[1 + 3 : 1 + 3 + 2, 1 + 4 : 1 + 4 + 3, 0], 0.5)
    assert np.all(grid[0] == 1.0)  # padding is white


def test_image_grid_refuses_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        image_grid(torch.zeros(3, 8, 8), n_rows=1)


def test_class_grid_is_a_png_with_a_row_per_class(tmp_path: Path) -> None:
    labels = torch.tensor([0, 0, 2, 2, 2, 5])
    x = torch.rand(6, 1, 8, 8)
    small = save_class_grid(x[:2], labels[:2], tmp_path / "one.png")
    big = save_class_grid(x, labels, tmp_path / "three.png", class_names=[str(i) for i in range(6)],
                          row_notes=["a", "b", "c"], title="t")
    h_small = Image.open(small).size[1]
    h_big = Image.open(big).size[1]
    assert Image.open(big).format == "PNG" and h_big > h_small  # more classes, more rows


def test_loss_curves(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history is empty"):
        save_loss_curves({"step": []}, tmp_path / "l.png")
    hist = {"step": list(range(50)), "loss": list(np.linspace(10, 1, 50)), "ce": [1.0] * 50, "validity": [0.5] * 50}
    path = save_loss_curves(hist, tmp_path / "l.png", title="x")
    assert Image.open(path).format == "PNG"
