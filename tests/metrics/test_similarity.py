import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from netinvert.metrics import nearest_ssim


def test_training_images_find_themselves(digits):
    scores = nearest_ssim(digits.x_train[:50], digits.x_train)
    assert scores.shape == (50,)
    assert torch.allclose(scores, torch.ones(50, dtype=torch.float64), atol=1e-9)


def test_noise_is_far_from_every_training_image(digits):
    noise = torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    real = nearest_ssim(digits.x_test[:50], digits.x_train)
    assert nearest_ssim(noise, digits.x_train).mean() < 0.4 < 0.8 < real.mean()


@pytest.mark.parametrize(("shape", "win"), [((1, 8, 8), 7), ((3, 6, 5), 5), ((1, 28, 28), 7)])
def test_exhaustive_search_equals_per_pair_skimage(shape, win):
    g = torch.Generator().manual_seed(1)
    refs = torch.rand(12, *shape, generator=g)
    samples = (0.6 * refs[:4] + 0.4 * torch.rand(4, *shape, generator=g)).clamp(0, 1)
    expected = [
        max(
            structural_similarity(
                s.numpy().astype(np.float64), r.numpy().astype(np.float64), win_size=win, data_range=1.0, channel_axis=0
            )
            for r in refs
        )
        for s in samples
    ]
    got = nearest_ssim(samples, refs, k=None)
    assert got.numpy() == pytest.approx(np.array(expected), abs=1e-12)
    # A shortlist can only miss the best match, never exceed it.
    assert (nearest_ssim(samples, refs, k=3) <= got + 1e-12).all()


@pytest.mark.parametrize(
    ("samples", "refs", "kwargs", "match"),
    [
        (torch.rand(0, 1, 8, 8), torch.rand(5, 1, 8, 8), {}, "empty"),
        (torch.rand(2, 8, 8), torch.rand(5, 1, 8, 8), {}, r"\(N, C, H, W\)"),
        (torch.rand(2, 1, 8, 8), torch.rand(5, 1, 7, 7), {}, "same image shape"),
        (torch.rand(2, 1, 2, 2), torch.rand(5, 1, 2, 2), {}, "at least 3x3"),
        (torch.rand(2, 1, 8, 8), torch.rand(5, 1, 8, 8), {"k": 0}, "'k' parameter"),
    ],
)
def test_invalid_inputs_raise(samples, refs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nearest_ssim(samples, refs, **kwargs)


def test_search_split_across_calls_gives_the_same_answer(monkeypatch):
    from netinvert.metrics import _similarity

    g = torch.Generator().manual_seed(2)
    refs, samples = torch.rand(50, 1, 8, 8, generator=g), torch.rand(7, 1, 8, 8, generator=g)
    whole = nearest_ssim(samples, refs, k=None)
    monkeypatch.setattr(_similarity, "_PAIRS_PER_CALL", 16)  # 16 pairs per skimage call
    assert torch.equal(nearest_ssim(samples, refs, k=None), whole)


def test_paired_ssim_equals_skimage_pair_by_pair() -> None:
    from skimage.metrics import structural_similarity

    from netinvert.metrics import paired_ssim

    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(6, 1, 8, 8, generator=g), torch.rand(6, 1, 8, 8, generator=g)
    b[0] = a[0]
    got = paired_ssim(a, b)
    want = [structural_similarity(a[i, 0].double().numpy(), b[i, 0].double().numpy(), data_range=1.0, win_size=7)
            for i in range(6)]
    assert got[0] == pytest.approx(1.0) and got.tolist() == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        paired_ssim(a, b[:3])


def test_ssim_matrix_is_every_pair() -> None:
    from netinvert.metrics import paired_ssim, ssim_matrix

    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(4, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    m = ssim_matrix(a, b)
    assert m.shape == (4, 3)
    for i in range(4):
        assert m[i].tolist() == pytest.approx(paired_ssim(a[i:i + 1].expand(3, -1, -1, -1), b).tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        ssim_matrix(a, torch.rand(2, 1, 9, 9))


@pytest.mark.parametrize(("shape", "win"), [((1, 8, 8), 7), ((3, 6, 5), 5), ((1, 28, 28), 7), ((2, 4, 9), 3)])
def test_ssim_matrix_equals_skimage_pair_by_pair(shape, win, monkeypatch) -> None:
    from netinvert.metrics import _similarity, ssim_matrix

    g = torch.Generator().manual_seed(7)
    a, b = torch.rand(5, *shape, generator=g), torch.rand(4, *shape, generator=g)
    b[1] = a[2]
    b[3] = (0.7 * a[0] + 0.3 * b[3]).clamp(0, 1)  # a near copy: SSIM close to 1
    want = np.array([[structural_similarity(x.double().numpy(), y.double().numpy(), win_size=win, data_range=1.0,
                                            channel_axis=0) for y in b] for x in a])
    got = ssim_matrix(a, b)
    assert got.dtype == torch.float32 and got.shape == (5, 4)
    assert got.double().numpy() == pytest.approx(want, abs=1e-6)
    assert got[2, 1] == pytest.approx(1.0, abs=1e-6)
    # blocks of rows and columns: one column and one row per block give the same matrix
    for name in ("_COLUMNS", "_MAP_ELEMENTS", "_FACTOR_ELEMENTS"):
        monkeypatch.setattr(_similarity, name, 1)
    assert torch.equal(ssim_matrix(a, b), got)
