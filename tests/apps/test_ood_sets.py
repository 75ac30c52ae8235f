"""OOD sets: noise, datasets converted to the in-distribution shape, and errors that name the set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from netinvert.apps.ood import LUMA_WEIGHTS, convert_images, list_ood_sets, load_ood_set, ood_from_dataset
from netinvert.data import dataset_status, list_datasets, load_dataset
from netinvert.exceptions import DatasetError, UnknownNameError

needs_fashion = pytest.mark.skipif(not dataset_status("fashion-mnist").available,
                                   reason="Fashion-MNIST files are not installed here")


def check_images(x: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert x.shape == shape and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_names() -> None:
    names = list_ood_sets()
    assert {"uniform", "gaussian", "fashion-mnist-inverted"} <= set(names)
    assert set(list_datasets()) <= set(names) and names == sorted(names)
    with pytest.raises(UnknownNameError, match=r"Unknown OOD set 'omniglot'. Valid names: cifar10, digits"):
        load_ood_set("omniglot", (1, 8, 8), n=2)


def test_noise_sets_are_seeded_and_in_range() -> None:
    u = load_ood_set("uniform", (3, 8, 8), n=500, seed=1)
    check_images(u, (500, 3, 8, 8))
    assert abs(float(u.mean()) - 0.5) < 0.02
    torch.testing.assert_close(u, load_ood_set("uniform", (3, 8, 8), n=500, seed=1))
    assert not torch.equal(u, load_ood_set("uniform", (3, 8, 8), n=500, seed=2))
    g = load_ood_set("gaussian", (1, 28, 28), n=50, seed=0)
    check_images(g, (50, 1, 28, 28))
    assert 0.0 < float((g == 0).float().mean()) < 0.5 and 0.0 < float((g == 1).float().mean()) < 0.5  # clipped
    dim = load_ood_set("gaussian", (1, 28, 28), n=50, seed=0, mean=0.2, std=0.0)
    assert torch.allclose(dim, torch.full_like(dim, 0.2))
    with pytest.raises(ValueError, match="OOD set 'uniform' is generated, so it has no natural size: pass n"):
        load_ood_set("uniform", (1, 8, 8))
    with pytest.raises(ValueError, match="'mean' and 'std' parameters of OOD set 'gaussian'"):
        load_ood_set("gaussian", (1, 8, 8), n=2, std=-1.0)
    with pytest.raises(TypeError, match="OOD set 'uniform' takes no parameter 'root'; its parameters: none"):
        load_ood_set("uniform", (1, 8, 8), n=2, root="data")
    with pytest.raises(TypeError, match="OOD set 'digits' takes no parameter 'transform'; its parameters: root, split"):
        load_ood_set("digits", (1, 8, 8), n=2, transform=None)


def test_digits_upscaled_to_28x28(digits) -> None:
    x = load_ood_set("digits", (1, 28, 28), n=20, seed=3)
    check_images(x, (20, 1, 28, 28))
    torch.testing.assert_close(x, ood_from_dataset(digits, (1, 28, 28), 20, seed=3))
    assert len(load_ood_set("digits", (1, 8, 8))) == len(digits.x_test)  # default: the whole test split
    same = ood_from_dataset(digits, (1, 8, 8), seed=0)
    assert sorted(map(tuple, same.flatten(1).tolist())) == sorted(map(tuple, digits.x_test.flatten(1).tolist()))
    assert len(ood_from_dataset(digits, (1, 8, 8), split="all")) == len(digits.x_train) + len(digits.x_test)
    with pytest.raises(ValueError, match=r"OOD set 'digits' asks for n=400 images but the test split of digits holds 360"):
        load_ood_set("digits", (1, 8, 8), n=400)
    with pytest.raises(ValueError, match="'split' parameter of OOD set 'digits' must be one of test, train, all"):
        load_ood_set("digits", (1, 8, 8), n=4, split="val")


def test_impossible_shapes_name_the_set() -> None:
    with pytest.raises(ValueError, match=r"Cannot convert OOD set 'digits' to shape \(2, 8, 8\): its images have 1 channels"):
        load_ood_set("digits", (2, 8, 8), n=4)
    with pytest.raises(ValueError, match=r"The 'shape' parameter of load_ood_set\('uniform'\) must be \(C, H, W\)"):
        load_ood_set("uniform", (1, 0, 8), n=4)
    with pytest.raises(ValueError, match=r"The 'shape' parameter of load_ood_set\('digits'\)"):
        load_ood_set("digits", (28, 28), n=4)
    with pytest.raises(ValueError, match=r"The 'n' parameter of load_ood_set\('digits'\) must be an int in \[1, inf\)"):
        load_ood_set("digits", (1, 8, 8), n=0)


def test_convert_channels_and_antialiased_resize() -> None:
    rgb = torch.zeros(1, 3, 4, 4)
    rgb[:, 0] = 1.0
    assert torch.allclose(convert_images(rgb, (1, 4, 4)), torch.full((1, 1, 4, 4), LUMA_WEIGHTS[0]))
    grey = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(convert_images(grey, (3, 5, 5)), grey.expand(-1, 3, -1, -1))
    # One-pixel stripes downscaled 28 -> 8: antialiasing averages them to grey instead of aliasing.
    stripes = (torch.arange(28) % 2).float().expand(1, 1, 28, 28)
    small = convert_images(stripes, (1, 8, 8))
    assert (small - 0.5).abs().max() < 0.1
    aliased = torch.nn.functional.interpolate(stripes, size=(8, 8), mode="bilinear", align_corners=False)
    assert (aliased - 0.5).abs().max() > 0.2  # what the antialiasing avoids
    assert convert_images(torch.zeros(0, 3, 32, 32), (1, 28, 28)).shape == (0, 1, 28, 28)


def test_image_folder_as_ood(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    x = load_ood_set("image-folder", (1, 8, 8), root=tmp_path, split="all")
    check_images(x, (6, 1, 8, 8))
    assert len(load_ood_set("image-folder", (3, 8, 8), root=tmp_path)) == 2  # the 80/20 split's test part


def test_missing_dataset_files_name_the_ood_set(tmp_path) -> None:
    with pytest.raises(DatasetError, match="OOD set 'fashion-mnist-inverted' cannot be loaded: Fashion-MNIST files not found"):
        load_ood_set("fashion-mnist-inverted", (1, 28, 28), n=4, root=tmp_path)


@needs_fashion
def test_fashion_mnist_inverted_and_downscaled_for_digits() -> None:
    fashion = load_dataset("fashion-mnist")
    inverted = load_ood_set("fashion-mnist-inverted", (1, 28, 28), n=16, seed=5)
    check_images(inverted, (16, 1, 28, 28))
    torch.testing.assert_close(inverted, 1.0 - ood_from_dataset(fashion, (1, 28, 28), 16, seed=5))
    assert float(inverted.mean()) > 0.5  # mostly light background
    small = ood_from_dataset(fashion, (1, 8, 8), 16, seed=5)
    check_images(small, (16, 1, 8, 8))
    torch.testing.assert_close(small.mean((1, 2, 3)), 1.0 - inverted.mean((1, 2, 3)), atol=0.02, rtol=0)
