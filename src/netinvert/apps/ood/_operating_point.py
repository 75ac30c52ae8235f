"""The garbage class's operating point: a bias on the garbage logit, chosen on validation data only.

Why: the garbage probability can rank OOD inputs almost perfectly (AUROC near 1) while the plain
argmax sends few of them to garbage. The argmax is one operating point, "garbage logit + 0", that
nothing chose: it is wherever training left it. Adding a bias ``b >= 0`` to the garbage logit moves
along the same ROC curve, sending more inputs to garbage at the price of some in-distribution
accuracy. :func:`calibrate_garbage_bias` picks ``b`` from the in-distribution *validation* split
under an explicit accuracy budget, so neither OOD data nor the test split has a say.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any

import torch

from ..._checks import bad_param

__all__ = ["calibrate_garbage_bias", "check_accuracy_budget", "garbage_argmax"]


def check_accuracy_budget(value: Any, owner: str) -> float:
    """``value`` as a float in [0, 1], or sklearn's ``ValueError`` naming ``accuracy_budget`` and ``owner``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
    if not ok:
        raise bad_param(owner, "accuracy_budget", "a float in [0, 1] (an accuracy drop; 0 disables the bias)", value)
    return float(value)


def _check(logits: Any, owner: str) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] < 2 or not logits.is_floating_point():
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{owner} expects floating logits of shape (N, K) with K >= 2, the garbage class last. "
                         f"Got {got} instead.")
    return logits


def garbage_argmax(logits: torch.Tensor, garbage_bias: float = 0.0) -> torch.Tensor:
    """Labels ``(N,)``: the argmax of ``logits`` ``(N, n+1)`` after adding ``garbage_bias`` to the last (garbage) logit.

    Ties go to the lower index (``torch.argmax``), so a real class tied with the biased garbage
    logit keeps the image. ``garbage_bias = 0`` is the plain argmax.

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0, 1.5], [0.0, 3.0, 1.0]])
    >>> garbage_argmax(logits).tolist(), garbage_argmax(logits, 1.0).tolist()
    ([0, 1], [2, 1])
    """
    logits = _check(logits, "garbage_argmax")
    shifted = logits.clone()
    shifted[:, -1] += garbage_bias
    return shifted.argmax(1)


def calibrate_garbage_bias(logits: torch.Tensor, y: torch.Tensor, accuracy_budget: float) -> float:
    """The garbage-logit bias ``b >= 0`` whose accuracy on ``(logits, y)`` is at most ``accuracy_budget`` below b = 0's.

    Pass the logits of the in-distribution *validation* split: the bias is an operating point, and
    choosing it on OOD or test data would be tuning on what it is measured on.

    The rule, exact and deterministic: with margins ``m_i = max_{c < n} f_ic - f_ig`` (how far the
    garbage logit ``f_ig`` is below the best real one), adding ``b`` sends image ``i`` to garbage
    when ``m_i < b``. Of the ``N`` images, those correct at ``b = 0`` are the ones at risk; at most
    ``k = floor(accuracy_budget * N)`` of them may be lost (the budget read as the decimal it is
    written as). ``b`` is the largest value among 0 and their margins such that at most ``k`` of
    them have ``m_i <= b``. Counting an image whose margin equals ``b`` as lost (though the tie
    keeps its label) leaves room for float rounding in ``f_ig + b``, so ``garbage_argmax(logits, b)``
    loses at most ``k`` images *exactly*: ``accuracy(0) - accuracy(b) <= accuracy_budget``. ``b``
    grows with the budget and is 0 when ``k = 0`` (in particular for ``accuracy_budget = 0``,
    which disables the bias).

    Parameters
    ----------
    logits : torch.Tensor
        Floating ``(N, n+1)`` logits of an ``(n+1)``-class model, the garbage class last.
    y : torch.Tensor
        True labels ``(N,)`` in ``[0, n)``; a garbage prediction is always wrong.
    accuracy_budget : float
        The largest accuracy drop allowed, a float in [0, 1] (0.005: half a point).

    Returns
    -------
    float
        ``b``, a value of ``logits``' dtype (so ``f_ig + b`` is the same sum at prediction time).

    Raises
    ------
    ValueError
        If ``accuracy_budget`` is not a float in [0, 1] (NaN included), or ``logits`` and ``y``
        are empty, misshapen or of different lengths.

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[3.0, 0.0, 2.0], [0.0, 3.0, 1.0], [3.0, 0.0, 0.0], [0.0, 3.0, 2.5]])
    >>> y = torch.tensor([0, 1, 0, 1])  # margins 1, 2, 3, 0.5: all correct at b = 0
    >>> calibrate_garbage_bias(logits, y, 0.0), calibrate_garbage_bias(logits, y, 0.25)
    (0.0, 0.5)
    >>> calibrate_garbage_bias(logits, y, 0.5), garbage_argmax(logits, 1.0).tolist()
    (1.0, [0, 1, 0, 2])
    """
    owner = "calibrate_garbage_bias"
    budget = check_accuracy_budget(accuracy_budget, owner)
    logits = _check(logits, owner)
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(logits) or len(y) == 0:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{owner} expects non-empty labels y of shape (N,) matching logits {tuple(logits.shape)}. "
                         f"Got {got} instead.")
    # The budget as the decimal it is written as (0.6 of 5 images is 3, though the float 0.6 is a hair below 3/5).
    k = math.floor(Fraction(repr(budget)) * len(y))
    best, label = logits[:, :-1].max(1)
    margin = best - logits[:, -1]
    at_risk = torch.sort(margin[(label == y.to(label.device)) & (margin >= 0)]).values
    if k == 0 or len(at_risk) == 0:
        return 0.0
    if k >= len(at_risk):
        return float(at_risk[-1])
    # The k-th smallest margin, stepped down past any tie with the (k+1)-th (a tie would count k+1 images lost).
    allowed = at_risk[:k][at_risk[:k] < at_risk[k]]
    return float(allowed[-1]) if len(allowed) else 0.0
