import warnings

import numpy as np
import pytest
import torch

from netinvert.metrics import frechet_distance


def _exact(n: int, mean: np.ndarray, std: np.ndarray, seed: int) -> np.ndarray:
    """Samples whose empirical mean and (unbiased) standard deviation are exactly ``mean``/``std``
    per dimension, with uncorrelated dimensions up to sampling noise removed by QR."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(0)
    q, _ = np.linalg.qr(z)  # orthonormal, zero-mean columns: empirical covariance is diagonal
    return q * np.sqrt(n - 1) * std + mean


def test_identical_sets_have_zero_distance():
    a = np.random.default_rng(0).normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_mean_shift_gives_squared_shift():
    a = np.random.default_rng(1).normal(size=(400, 3))
    d = np.array([1.0, -2.0, 0.5])
    assert frechet_distance(a, a + d) == pytest.approx(float(d @ d), rel=1e-8)  # 5.25


def test_hand_computed_diagonal_gaussians():
    # d^2 = |m1 - m2|^2 + sum_i (s1_i - s2_i)^2 for diagonal covariances (Dowson & Landau 1982).
    a = _exact(300, np.array([0.0, 1.0]), np.array([1.0, 2.0]), seed=2)
    b = _exact(300, np.array([3.0, 1.0]), np.array([2.0, 2.0]), seed=3)
    # mean term 3^2 = 9, covariance term (1 - 2)^2 + (2 - 2)^2 = 1
    assert frechet_distance(a, b) == pytest.approx(10.0, rel=1e-6)


def test_two_draws_of_one_gaussian_are_close_and_shrink_with_n():
    rng = np.random.default_rng(4)
    small = frechet_distance(rng.normal(size=(100, 4)), rng.normal(size=(100, 4)))
    large = frechet_distance(rng.normal(size=(5000, 4)), rng.normal(size=(5000, 4)))
    assert large < small < 1.0
    assert frechet_distance(torch.randn(50, 4), torch.randn(50, 4) + 10.0) > 100


def test_fewer_samples_than_dimensions_stays_finite_without_warnings():
    rng = np.random.default_rng(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = frechet_distance(rng.normal(size=(10, 32)), rng.normal(size=(10, 32)))
    assert np.isfinite(dist) and dist >= 0


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.zeros(5), np.zeros((5, 1)), "2-D"),
        (np.zeros((1, 3)), np.zeros((5, 3)), "at least 2 rows"),
        (np.zeros((5, 3)), np.zeros((5, 4)), "same feature width"),
        (np.full((5, 3), np.nan), np.zeros((5, 3)), "NaN"),
    ],
)
def test_invalid_inputs_raise(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)
