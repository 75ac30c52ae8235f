"""OOD detection metrics: AUROC, AUPR-IN, AUPR-OUT and FPR at 95% TPR, as pytorch-ood's ``OODMetrics``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

__all__ = ["OODMetrics", "METRIC_KEYS"]

#: The keys of :meth:`OODMetrics.compute`, in this order (pytorch-ood's names).
METRIC_KEYS = ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR")
#: The true positive rate (share of OOD detected) at which the false positive rate is read.
TPR_LEVEL = 0.95


def _as_vector(value: Any) -> np.ndarray:
    """A 1-D numpy copy of a tensor, array, list or scalar."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    return arr.reshape(-1) if arr.ndim else arr.reshape(1)


class OODMetrics:
    """Accumulate OOD scores with their ground truth, then compute the standard detection metrics.

    Conventions (those of pytorch-ood's ``OODMetrics``, Kirchheim et al. 2022): a higher score means
    more out-of-distribution, and OOD is the *positive* class.

    - ``AUROC``: area under the ROC curve of the scores with OOD positive,
      ``roc_auc_score(is_ood, scores)``; 0.5 for an uninformative score, 1.0 for a perfect one.
    - ``AUPR-IN``: area under the precision-recall curve with *in-distribution* positive, scored by
      ``-scores``: ``average_precision_score(1 - is_ood, -scores)``.
    - ``AUPR-OUT``: the same with OOD positive: ``average_precision_score(is_ood, scores)``.
    - ``FPR95TPR``: the share of in-distribution samples scored as OOD at the highest threshold that
      flags at least 95% of the OOD samples (the first point of ``roc_curve(is_ood, scores)`` with
      TPR >= 0.95; lower is better).

    All four come from scikit-learn. The areas under the precision-recall curves are average
    precision (step-wise); pytorch-ood integrates the same curve with trapezoids, which can differ
    slightly on small sets. Ties are handled as scikit-learn does (a tie counts half in AUROC).
    (Hendrycks & Gimpel, arXiv 1610.02136; Liang et al., ODIN, arXiv 1706.02690.)

    Examples
    --------
    >>> m = OODMetrics().update([0.1, 0.2], is_ood=False).update([0.8, 0.9], is_ood=True)
    >>> m.compute()
    {'AUROC': 1.0, 'AUPR-IN': 1.0, 'AUPR-OUT': 1.0, 'FPR95TPR': 0.0}
    """

    def __init__(self) -> None:
        self._scores: list[np.ndarray] = []
        self._is_ood: list[np.ndarray] = []

    def update(self, scores: Any, is_ood: Any) -> OODMetrics:
        """Add a batch.

        Parameters
        ----------
        scores : tensor, array or list of shape (N,)
            OOD scores, higher = more OOD; any shape is flattened. NaN or infinite scores are refused.
        is_ood : bool, or tensor, array or list of shape (N,)
            True (or 1) for OOD samples, False (or 0) for in-distribution ones; a single bool marks the
            whole batch.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If a score is NaN or infinite, ``is_ood`` holds values other than 0/1, or the sizes differ.
        """
        s = _as_vector(scores)
        if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
            raise ValueError(f"OODMetrics.update expects real-valued scores. Got dtype {s.dtype} instead.")
        s = s.astype(np.float64)
        bad = ~np.isfinite(s)
        if bad.any():
            n_nan = int(np.isnan(s).sum())
            raise ValueError(
                f"OODMetrics.update got {n_nan} NaN and {int(bad.sum()) - n_nan} infinite scores (first at position "
                f"{int(np.flatnonzero(bad)[0])} of this batch); scores must be finite. Check the detector and its inputs."
            )
        flags = _as_vector(is_ood)
        if flags.size == 1 and s.size != 1:
            flags = np.repeat(flags, s.size)
        if flags.dtype != bool:
            if not np.issubdtype(flags.dtype, np.number) or not np.isin(flags, (0, 1)).all():
                raise ValueError(
                    f"The 'is_ood' parameter of OODMetrics.update must hold booleans or 0/1. Got values "
                    f"{np.unique(flags)[:5].tolist()} instead."
                )
            flags = flags.astype(bool)
        if flags.size != s.size:
            raise ValueError(f"OODMetrics.update got {s.size} scores but {flags.size} is_ood flags; they must match.")
        self._scores.append(s)
        self._is_ood.append(flags)
        return self

    def compute(self) -> dict[str, float]:
        """The metrics over everything added since the last :meth:`reset`.

        Returns
        -------
        dict
            ``{"AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR"}`` (see :data:`METRIC_KEYS`), plain floats.

        Raises
        ------
        ValueError
            If nothing was added, or only in-distribution or only OOD samples were.
        """
        scores = np.concatenate(self._scores) if self._scores else np.empty(0)
        is_ood = np.concatenate(self._is_ood) if self._is_ood else np.empty(0, dtype=bool)
        if scores.size == 0:
            raise ValueError("OODMetrics.compute has no scores; call update(scores, is_ood) with in-distribution and OOD samples first.")
        n_ood = int(is_ood.sum())
        n_in = int(is_ood.size - n_ood)
        if n_ood == 0 or n_in == 0:
            missing = "OOD" if n_ood == 0 else "in-distribution"
            raise ValueError(
                f"OODMetrics.compute needs both in-distribution and OOD samples, but got {n_in} in-distribution and "
                f"{n_ood} OOD ones: add some {missing} samples."
            )
        y = is_ood.astype(np.int64)
        fpr, tpr, _ = roc_curve(y, scores, drop_intermediate=False)
        # tpr is non-decreasing along the curve; the first point at or above the level is the
        # highest threshold that catches 95% of the OOD samples.
        idx = min(int(np.searchsorted(tpr, TPR_LEVEL, side="left")), len(tpr) - 1)
        return {
            "AUROC": float(roc_auc_score(y, scores)),
            "AUPR-IN": float(average_precision_score(1 - y, -scores)),
            "AUPR-OUT": float(average_precision_score(y, scores)),
            "FPR95TPR": float(fpr[idx]),
        }

    def reset(self) -> OODMetrics:
        """Forget every batch; returns ``self``."""
        self._scores.clear()
        self._is_ood.clear()
        return self

    def __len__(self) -> int:
        return sum(len(s) for s in self._scores)
