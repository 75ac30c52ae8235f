"""image-folder loader on PNG/JPEG files written with Pillow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from netinvert.data import dataset_status, load_dataset
from netinvert.exceptions import DatasetError


def grey(value, size=(5, 4)):
    """A greyscale image whose pixel (row r, col c) is value + r * w + c (so every image differs)."""
    w, h = size
    return Image.fromarray((value + np.arange(w * h).reshape(h, w)).astype(np.uint8), mode="L")


def write_class(folder, values, size=(5, 4), ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for v in values:
        grey(v, size).save(folder / f"img_{v:03d}{ext}")


def test_train_test_layout_round_trips_exact_pixels(tmp_path):
    write_class(tmp_path / "train" / "cat", [0, 20])
    write_class(tmp_path / "train" / "dog", [40, 60, 80])
    write_class(tmp_path / "test" / "dog", [100])
    data = load_dataset("image-folder", tmp_path)

    assert data.name == "image-folder" and data.class_names == ("cat", "dog")
    assert data.x_train.shape == (5, 1, 4, 5) and data.x_test.shape == (1, 1, 4, 5)
    assert data.y_train.tolist() == [0, 0, 1, 1, 1] and data.y_test.tolist() == [1]
    want = torch.from_numpy(np.array(grey(60)))
    assert torch.equal((data.x_train[3, 0] * 255).round().to(torch.uint8), want)
    assert float(data.x_test[0, 0, 3, 4]) == pytest.approx((100 + 19) / 255)
    assert "train/ and test/" in data.source


def test_single_layout_split_is_seeded_stratified_and_repeatable(tmp_path):
    write_class(tmp_path / "a", range(0, 10))
    write_class(tmp_path / "b", range(100, 110))
    write_class(tmp_path / "c", [200])  # a single image stays in train
    first = load_dataset("image-folder", tmp_path)
    second = load_dataset("image-folder", tmp_path)

    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.x_test, second.x_test)
    assert np.bincount(first.y_train.numpy(), minlength=3).tolist() == [8, 8, 1]
    assert np.bincount(first.y_test.numpy(), minlength=3).tolist() == [2, 2, 0]
    # the split is disjoint and complete: every image appears exactly once
    firsts = sorted(int(round(float(v) * 255)) for v in torch.cat([first.x_train, first.x_test])[:, 0, 0, 0])
    assert firsts == [*range(0, 10), *range(100, 110), 200]
    assert "seed 0" in first.source


def test_colour_anywhere_makes_three_channels_and_grey_is_repeated(tmp_path):
    write_class(tmp_path / "train" / "g", [10])
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 7
    (tmp_path / "train" / "rgb").mkdir()
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "train" / "rgb" / "x.png")
    write_class(tmp_path / "test" / "g", [30], ext=".jpg")
    data = load_dataset("image-folder", tmp_path)

    assert data.input_shape == (3, 4, 5)
    g = data.x_train[data.y_train == 0][0]
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    r = data.x_train[data.y_train == 1][0]
    assert r[0].eq(1.0).all() and r[1].eq(0.0).all() and r[2].eq(7 / 255).all()
    assert data.x_test.shape == (1, 3, 4, 5)  # the JPEG (lossy) is read too


def test_16_bit_png_is_scaled_by_65535(tmp_path):
    (tmp_path / "k").mkdir()
    values = np.array([[0, 1000, 65535]], dtype=np.uint16)
    for i in range(3):  # three, so the 80/20 split leaves one for the test split
        Image.fromarray(values).save(tmp_path / "k" / f"deep{i}.png")
    data = load_dataset("image-folder", tmp_path)
    assert data.input_shape == (1, 1, 3)
    assert data.x_train[0, 0, 0].tolist() == pytest.approx([0.0, 1000 / 65535, 1.0])


def test_mismatched_sizes_name_the_odd_file(tmp_path):
    write_class(tmp_path / "a", [0, 1, 3])
    write_class(tmp_path / "b", [2], size=(6, 4))
    with pytest.raises(DatasetError, match=r"one size, but .*b/img_002\.png is 6x4 while .*a/img_000\.png is 5x4"):
        load_dataset("image-folder", tmp_path)


def test_corrupt_image_is_named(tmp_path):
    write_class(tmp_path / "a", [0, 1, 2])
    path = tmp_path / "a" / "img_001.png"
    path.write_bytes(path.read_bytes()[:50])  # header intact, pixel data cut
    with pytest.raises(DatasetError, match=r"cannot (read|decode) .*img_001\.png"):
        load_dataset("image-folder", tmp_path)
    path.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"cannot read .*img_001\.png as an image"):
        load_dataset("image-folder", tmp_path)


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match="image-folder needs a folder"):
        load_dataset("image-folder")
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset("image-folder", tmp_path / "absent")
    with pytest.raises(DatasetError, match="has no class sub-folders"):
        load_dataset("image-folder", tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"class folder .*empty holds no \.png/\.jpg/\.jpeg files"):
        load_dataset("image-folder", tmp_path)

    split = tmp_path / "split"
    write_class(split / "train" / "a", [0])
    with pytest.raises(DatasetError, match="has a train/ folder but no test/ folder"):
        load_dataset("image-folder", split)
    write_class(split / "test" / "z", [0])
    with pytest.raises(DatasetError, match="test has classes missing from .*train: z"):
        load_dataset("image-folder", split)

    tiny = tmp_path / "tiny"  # at most 2 images per class: the 20% test share rounds to none
    write_class(tiny / "a", [0, 1])
    write_class(tiny / "b", [2])
    with pytest.raises(DatasetError, match=r"image-folder: .*tiny is too small to split off a test set"):
        load_dataset("image-folder", tiny)


def test_status_reads_one_header_for_the_input_shape(tmp_path):
    write_class(tmp_path / "a", [0])
    write_class(tmp_path / "b", [1])
    status = dataset_status("image-folder", tmp_path)
    assert status.available and status.where == str(tmp_path)
    assert status.input_shape == (1, 4, 5) and status.n_classes == 2
    missing = dataset_status("image-folder", tmp_path / "absent")
    assert not missing.available and "is not a folder" in missing.hint
