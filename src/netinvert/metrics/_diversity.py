"""Within-set diversity as the mean pairwise cosine similarity (1 = all samples point the same way)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["mean_pairwise_cosine"]

#: Norm below which a vector counts as zero (a blank image, a dead feature vector).
_ZERO_NORM = 1e-12


def mean_pairwise_cosine(x: torch.Tensor | np.ndarray, *, center: torch.Tensor | np.ndarray | None = None) -> float:
    """Mean cosine similarity over all pairs of distinct rows of ``x``.

    .. math::

        \\operatorname{div}(X) = \\frac{1}{N(N-1)} \\sum_{i \\ne j}
            \\frac{x_i \\cdot x_j}{\\lVert x_i \\rVert \\, \\lVert x_j \\rVert}

    1 means every sample is the same up to scale (mode collapse to one template); lower is more
    varied. The figure means little alone: compare it with the same figure for real images of the
    same class and count, in the same space. Self-pairs are excluded, so the value does not drift
    with ``N`` the way a mean including the diagonal would.

    Zero vectors have no direction. Two zero vectors count as identical (similarity 1) and a zero
    vector against a non-zero one as 0, so that a generator collapsing to blank images reads as
    collapsed rather than as maximally diverse.

    Parameters
    ----------
    x : tensor or array of shape (N, ...)
        One sample per row; trailing dimensions (e.g. ``(C, H, W)`` pixels) are flattened.
    center : tensor or array with ``x[0].numel()`` values, optional
        Subtracted from every row first. Non-negative vectors (pixels, post-ReLU features) all
        point into one orthant, so their raw cosines crowd near 1 and a collapsed set differs
        little from a varied one; measured from the mean of real data, the cosine compares
        directions of deviation instead (:func:`inversion_metrics` does this).

    Returns
    -------
    float
        The mean off-diagonal cosine similarity, in [-1, 1].

    Raises
    ------
    ValueError
        If ``x`` has fewer than two rows or holds non-finite values, or ``center`` has the wrong
        size.

    Examples
    --------
    >>> import torch
    >>> mean_pairwise_cosine(torch.eye(3))
    0.0
    >>> mean_pairwise_cosine(torch.ones(4, 5))
    1.0
    """
    t = (x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))).cpu().double()
    if t.dim() < 1 or t.shape[0] < 2:
        raise ValueError(f"mean_pairwise_cosine needs at least 2 samples. Got shape {tuple(t.shape)} instead.")
    t = t.reshape(t.shape[0], -1)
    if center is not None:
        c = (center.detach() if isinstance(center, torch.Tensor) else torch.as_tensor(np.asarray(center))).cpu().double()
        if c.numel() != t.shape[1]:
            raise ValueError(f"The 'center' parameter of mean_pairwise_cosine must have {t.shape[1]} values. Got {c.numel()} instead.")
        t = t - c.reshape(1, -1)
    if not torch.isfinite(t).all():
        raise ValueError("mean_pairwise_cosine got NaN or infinite values.")
    n = t.shape[0]
    norms = t.norm(dim=1)
    zero = norms < _ZERO_NORM
    unit = t / norms.clamp_min(_ZERO_NORM)[:, None]
    gram = unit @ unit.T
    gram[zero[:, None] & zero[None, :]] = 1.0
    off_diagonal = gram.sum() - gram.diagonal().sum()
    return float((off_diagonal / (n * (n - 1))).clamp(-1.0, 1.0))
