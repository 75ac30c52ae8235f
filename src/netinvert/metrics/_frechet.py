"""Frechet distance between two sets of feature vectors (the FID recipe, any feature extractor)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from scipy import linalg

__all__ = ["frechet_distance"]

log = logging.getLogger(__name__)

#: Ridge added to both covariances when their product has no finite square root (FID's guard).
_SQRTM_OFFSET = 1e-6
#: Largest imaginary part, relative to the trace, tolerated in sqrtm's result before warning.
_IMAG_TOLERANCE = 1e-3


def _as_matrix(feats: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """``(N, D)`` float64 numpy copy of ``feats``, validated."""
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().numpy()
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"The '{name}' parameter of frechet_distance must be a 2-D (N, D) array. Got shape {arr.shape} instead.")
    if arr.shape[0] < 2:
        raise ValueError(
            f"The '{name}' parameter of frechet_distance needs at least 2 rows to estimate a covariance. "
            f"Got {arr.shape[0]} instead."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"The '{name}' parameter of frechet_distance contains NaN or infinite values.")
    return arr


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    .. math::

        d^2 = \\lVert \\mu_a - \\mu_b \\rVert^2
              + \\operatorname{tr}\\bigl(\\Sigma_a + \\Sigma_b - 2 (\\Sigma_a \\Sigma_b)^{1/2}\\bigr)

    This is the Frechet Inception Distance recipe (Heusel et al. 2017,
    https://arxiv.org/abs/1706.08500) with whatever features the caller extracts; netinvert feeds
    the penultimate features of an adversarially trained verifier, whose features follow what a
    person sees more closely than a plain network's. The matrix square root is
    :func:`scipy.linalg.sqrtm`; when scipy reports the product singular or the root is not
    finite (e.g. fewer samples than feature dimensions), both covariances get a ``1e-6`` ridge
    and it is recomputed, and a residual imaginary part from round-off is dropped (with a
    ``RuntimeWarning`` if it is not negligible).

    The estimate is biased upwards by the sample sizes (two sets drawn from the same distribution
    have a positive distance that shrinks like ``1/N``): compare only distances computed with the
    same ``N``, as :func:`inversion_metrics` does with its ``real_vs_real`` baseline.

    Parameters
    ----------
    feats_a, feats_b : tensor or array of shape (N_a, D) and (N_b, D)
        Feature vectors, one row per sample; at least two rows each.

    Returns
    -------
    float
        The squared Frechet distance (non-negative up to round-off; clipped at 0).

    Raises
    ------
    ValueError
        If an input is not 2-D, has fewer than two rows, holds non-finite values, or the two
        feature widths differ.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(5000, 2))
    >>> round(frechet_distance(a, a + [3.0, 0.0]), 3)
    9.0
    """
    a = _as_matrix(feats_a, "feats_a")
    b = _as_matrix(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a and feats_b must have the same feature width. Got {a.shape[1]} and {b.shape[1]} instead.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a = np.atleast_2d(np.cov(a, rowvar=False))
    sigma_b = np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu_a - mu_b
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma_a @ sigma_b)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    if singular or not np.isfinite(covmean).all():
        # Fewer samples than feature dimensions make the covariances singular; a small ridge
        # makes the product's square root well defined and changes the distance negligibly.
        log.debug("covariance product is singular; adding a %.0e ridge before sqrtm", _SQRTM_OFFSET)
        offset = np.eye(a.shape[1]) * _SQRTM_OFFSET
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        scale = max(float(np.trace(sigma_a) + np.trace(sigma_b)), 1e-12)
        imag = float(np.abs(np.diagonal(covmean).imag).max())
        if imag > _IMAG_TOLERANCE * scale:
            warnings.warn(
                f"The square root of the covariance product has an imaginary part of {imag:.3g} "
                f"(trace scale {scale:.3g}); the Frechet distance is approximate. Use more samples.",
                RuntimeWarning,
                stacklevel=2,
            )
        covmean = covmean.real
    dist = float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean))
    return max(dist, 0.0)
