"""Similarity of each sample to its nearest real image (SSIM), for realism and memorisation."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["nearest_ssim", "paired_ssim", "ssim_matrix"]

#: SSIM's usual window; smaller images get the largest odd window that fits.
_DEFAULT_WINDOW = 7
#: Rows of the sample-by-reference distance matrix computed at once (bounds memory on 60k refs).
_CHUNK = 256
#: Image pairs scored per skimage call (bounds the memory of its full SSIM map).
_PAIRS_PER_CALL = 4096


def _ssim_window(height: int, width: int) -> int:
    """Largest odd SSIM window, at most 7, that fits an image of this size (7 for 8x8 and up)."""
    side = min(_DEFAULT_WINDOW, int(height), int(width))
    side -= 1 - side % 2
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels. Got {height}x{width} instead.")
    return side


def _as_images(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = (x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))).cpu().float()
    if t.dim() != 4:
        raise ValueError(f"The '{name}' parameter of nearest_ssim must be (N, C, H, W) images. Got shape {tuple(t.shape)} instead.")
    if len(t) == 0:
        raise ValueError(f"The '{name}' parameter of nearest_ssim is empty.")
    if not torch.isfinite(t).all():
        raise ValueError(f"The '{name}' parameter of nearest_ssim contains NaN or infinite values.")
    return t


def _l2_candidates(samples: torch.Tensor, references: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(N, k)`` of the ``k`` references nearest to each sample in Euclidean distance."""
    # float32 is precise enough to shortlist and halves the cost of the 60,000-reference product.
    s = samples.reshape(len(samples), -1).float()
    r = references.reshape(len(references), -1).float()
    r_sq = (r * r).sum(1)
    out = []
    for i in range(0, len(s), _CHUNK):
        block = s[i : i + _CHUNK]
        # |s|^2 is constant per row, so ranking by |r|^2 - 2 s.r ranks by distance.
        dist = r_sq[None, :] - 2.0 * block @ r.T
        out.append(dist.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


def _ssim_pairs(a: np.ndarray, b: np.ndarray, win: int) -> np.ndarray:
    """SSIM of each pair ``(a[t], b[t])`` of ``(T, C, H, W)`` images, in one skimage call.

    The pairs are stacked into one tall image. skimage averages the SSIM map only where the
    whole window lies inside the image (it crops ``(win - 1) // 2`` pixels at each border), so
    cropping the same border inside every tile keeps exactly the windows of that pair: the
    result equals one ``structural_similarity`` call per pair without its per-call overhead.
    """
    from skimage.metrics import structural_similarity

    t, c, h, w = a.shape
    tall_a = a.transpose(0, 2, 3, 1).reshape(t * h, w, c)
    tall_b = b.transpose(0, 2, 3, 1).reshape(t * h, w, c)
    _, full = structural_similarity(tall_a, tall_b, win_size=win, data_range=1.0, channel_axis=-1, full=True)
    pad = (win - 1) // 2
    tiles = full.reshape(t, h, w, c)[:, pad : h - pad, pad : w - pad, :]
    return tiles.reshape(t, -1).mean(1)


def nearest_ssim(
    samples: torch.Tensor | np.ndarray,
    references: torch.Tensor | np.ndarray,
    *,
    k: int | None = 10,
) -> torch.Tensor:
    """SSIM of each sample to its most similar reference image.

    SSIM (Wang et al. 2004, https://doi.org/10.1109/TIP.2003.819861) compares local means,
    contrasts and structure, so it rewards images with the shapes of real ones rather than their
    pixel averages. Against the training set it serves twice: a low value says the sample looks
    like no real image (noise, textures); a value near 1 says it copies one (memorisation).

    The search is two-stage to stay cheap on 60,000 references: the ``k`` references nearest in
    Euclidean pixel distance are shortlisted, then SSIM as
    :func:`skimage.metrics.structural_similarity` computes it (``data_range=1``, uniform 7x7
    window, or the largest odd window that fits smaller images; colour channels averaged) scores
    each and the best is kept. The result is therefore a lower bound on the exact maximum over
    all references, equal to it whenever the SSIM-nearest image is among the ``k`` L2-nearest
    (always so for a sample that copies a reference). ``k=None`` scores every reference (exact).

    Parameters
    ----------
    samples : tensor or array of shape (N, C, H, W)
        Images in [0, 1].
    references : tensor or array of shape (M, C, H, W)
        Real images in [0, 1], usually the training split.
    k : int or None, default=10
        Size of the L2 shortlist per sample; ``None`` for an exhaustive search.

    Returns
    -------
    torch.Tensor of shape (N,), float64
        The best SSIM per sample, in [-1, 1].

    Raises
    ------
    ValueError
        If either input is empty, not 4-D, non-finite, the image shapes differ, images are
        smaller than 3x3, or ``k`` is below 1.

    Examples
    --------
    >>> import torch
    >>> refs = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> nearest_ssim(refs[:3], refs).round(decimals=6).tolist()
    [1.0, 1.0, 1.0]
    """
    s = _as_images(samples, "samples")
    r = _as_images(references, "references")
    if s.shape[1:] != r.shape[1:]:
        raise ValueError(f"samples and references must have the same image shape. Got {tuple(s.shape[1:])} and {tuple(r.shape[1:])} instead.")
    if k is not None and int(k) < 1:
        raise ValueError(f"The 'k' parameter of nearest_ssim must be an int in [1, inf) or None. Got {k} instead.")
    _, c, h, w = s.shape
    win = _ssim_window(h, w)
    shortlist = len(r) if k is None else min(int(k), len(r))
    s_np = s.numpy().astype(np.float64)
    r_np = r.numpy()  # float32 view; only the shortlisted references are converted below
    # Samples per block so that a block holds about _PAIRS_PER_CALL pairs; an exhaustive search on
    # a large reference set has more candidates than that per sample and splits them further.
    step = max(1, _PAIRS_PER_CALL // shortlist)
    best = np.full(len(s_np), -np.inf)
    for i in range(0, len(s_np), step):
        block = slice(i, min(i + step, len(s_np)))
        n_block = block.stop - block.start
        if shortlist < len(r_np):
            idx = _l2_candidates(s[block], r, shortlist).numpy()
        else:
            idx = np.broadcast_to(np.arange(len(r_np)), (n_block, len(r_np)))
        for j in range(0, shortlist, _PAIRS_PER_CALL):
            cols = idx[:, j : j + _PAIRS_PER_CALL]
            pairs_a = np.repeat(s_np[block], cols.shape[1], axis=0)
            pairs_b = r_np[cols.reshape(-1)].astype(np.float64)
            scores = _ssim_pairs(pairs_a, pairs_b, win).reshape(n_block, -1).max(1)
            best[block] = np.maximum(best[block], scores)
    return torch.from_numpy(best)


def paired_ssim(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> torch.Tensor:
    """SSIM of each pair ``(a[i], b[i])`` of ``(N, C, H, W)`` images in [0, 1] (data range 1).

    The window is the largest odd one up to 7 that fits (:func:`nearest_ssim`'s). Used where two
    sets correspond one to one: an explanation map of a trained and of a randomised model, a
    reconstruction and the training image it was matched to.

    Raises
    ------
    ValueError
        If the sets differ in shape, are empty, hold non-finite values, or are smaller than 3x3.

    Examples
    --------
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> paired_ssim(x, x).tolist()
    [1.0, 1.0]
    """
    a, b = _as_images(a, "a"), _as_images(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired_ssim needs two sets of the same shape. Got {tuple(a.shape)} and {tuple(b.shape)} instead.")
    win = _ssim_window(a.shape[2], a.shape[3])
    an, bn = a.double().numpy(), b.double().numpy()
    out = np.concatenate([_ssim_pairs(an[i:i + _PAIRS_PER_CALL], bn[i:i + _PAIRS_PER_CALL], win)
                          for i in range(0, len(an), _PAIRS_PER_CALL)])
    return torch.from_numpy(out).float()


#: Elements of one block of the pairwise SSIM map (channels x positions x rows x columns, float64) held at once.
_MAP_ELEMENTS = 1 << 23
#: Elements of one block of either side's factors (channels x positions x images x 2 (K + 2), float64).
_FACTOR_ELEMENTS = 1 << 25
#: Columns (images of ``b``) per block of :func:`ssim_matrix`, at most.
_COLUMNS = 512
_C1, _C2 = 0.01 ** 2, 0.03 ** 2  # skimage's (K1 * data_range)^2 and (K2 * data_range)^2 with data_range 1


def ssim_matrix(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, *,
                device: str | torch.device | None = None) -> torch.Tensor:
    """SSIM ``(len(a), len(b))`` of every image of ``a`` against every image of ``b`` (both ``(N, C, H, W)`` in [0, 1]).

    Exact (no shortlist, unlike :func:`nearest_ssim`): what a one-to-one matching of two sets needs. It is
    the SSIM :func:`skimage.metrics.structural_similarity` computes (uniform window, sample covariance,
    ``data_range=1``, channels averaged), rearranged so that all pairs cost two matrix products. Over the
    windows inside the image, SSIM's numerator ``(2 mu_x mu_y + C1)(2 cov_xy + C2)`` and denominator
    ``(mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)`` are each a sum of products of one term of ``x`` and one
    of ``y`` (the covariance is the dot product of the two windows' pixels minus the means' product), so
    for every window position the numerators of all pairs are one product of an ``(N x 2(K+2))`` by a
    ``(2(K+2) x M)`` matrix (``K`` pixels a window) and the denominators one of inner size 4. What is left
    per pair and window is a division and the mean. BLAS does the work on a CPU, the GPU with
    ``device="cuda"``; in float64 it agrees with skimage's per-pair call to ~1e-12.

    Parameters
    ----------
    a, b : tensor or array of shape (N, C, H, W) and (M, C, H, W)
    device : str or torch.device, optional
        Where to compute (default: the CPU); the result is on the CPU.

    Raises
    ------
    ValueError
        If the images differ in shape, a set is empty or holds non-finite values.
    """
    a, b = _as_images(a, "a"), _as_images(b, "b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"ssim_matrix needs images of one shape. Got {tuple(a.shape[1:])} and {tuple(b.shape[1:])} instead.")
    win = _ssim_window(a.shape[2], a.shape[3])
    dev = torch.device("cpu") if device is None else torch.device(device)
    out = torch.empty(len(a), len(b), dtype=torch.float64)
    n_pos = (a.shape[2] - win + 1) * (a.shape[3] - win + 1)
    per_image = a.shape[1] * n_pos * 2 * (win * win + 2)  # factor elements of one image
    cols = max(1, min(_COLUMNS, _FACTOR_ELEMENTS // per_image))  # memory stays bounded for any sizes
    rows = max(1, min(_MAP_ELEMENTS // (a.shape[1] * n_pos * cols), _FACTOR_ELEMENTS // per_image))
    for j in range(0, len(b), cols):
        num_b, den_b = _pair_factors(b[j:j + cols].to(dev, torch.float64), win, left=False)
        for i in range(0, len(a), rows):
            num_a, den_a = _pair_factors(a[i:i + rows].to(dev, torch.float64), win, left=True)
            ssim_map = torch.matmul(num_a, num_b).div_(torch.matmul(den_a, den_b))  # (C, P, rows, cols)
            out[i:i + rows, j:j + cols] = ssim_map.mean(dim=(0, 1)).cpu()
    return out.float()


def _pair_factors(x: torch.Tensor, win: int, *, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One side's factors of SSIM's numerator and denominator for every window position: ``(C, P, N, F)``
    on the left and ``(C, P, F, N)`` on the right, so that their products over ``F`` give every pair's terms.

    With ``K = win**2`` pixels a window, mean ``m``, sample variance ``v`` (skimage's ``cov_norm * (E[x^2] -
    E[x]^2)``) and ``s = 2 cov_norm``: ``2 m_x m_y + C1 = [2 m_x, C1] . [m_y, 1]``, ``2 cov_xy + C2 =
    [s x / K, -s m_x, C2] . [y, m_y, 1]`` (pixels of the window), so the numerator's factors are the outer
    products of those two pairs of vectors; ``(m_x^2 + C1 + m_y^2)(v_x + C2 + v_y) = [p r, p, r, 1] .
    [1, v_y, m_y^2, m_y^2 v_y]`` with ``p = m_x^2 + C1`` and ``r = v_x + C2``.
    """
    n, c = x.shape[:2]
    k = win * win
    patches = torch.nn.functional.unfold(x, win).view(n, c, k, -1).permute(1, 3, 0, 2)  # (C, P, N, K)
    mean = patches.mean(3, keepdim=True)
    var = (patches.pow(2).mean(3, keepdim=True) - mean.pow(2)) * (k / (k - 1))
    s = 2 * k / (k - 1)
    one = torch.ones_like(mean)
    if left:
        first = torch.cat([2 * mean, _C1 * one], 3)  # (C, P, N, 2)
        second = torch.cat([patches * (s / k), -s * mean, _C2 * one], 3)  # (C, P, N, K + 2)
        p, r = mean.pow(2) + _C1, var + _C2
        den = torch.cat([p * r, p, r, one], 3)
    else:
        first = torch.cat([mean, one], 3)
        second = torch.cat([patches, mean, one], 3)
        q = mean.pow(2)
        den = torch.cat([one, var, q, q * var], 3)
    num = (first[..., :, None] * second[..., None, :]).flatten(3)  # (C, P, N, 2 (K + 2))
    return (num, den) if left else (num.transpose(2, 3), den.transpose(2, 3))
