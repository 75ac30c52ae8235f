"""Validity and confidence of samples under the classifier they were meant for: the one place they are computed."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["validity_from_logits", "validity_report"]

#: Images per forward pass.
_BATCH = 512


def validity_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Validity (share whose argmax is the label) and confidence (mean softmax of the label), overall and per class.

    Parameters
    ----------
    logits : tensor of shape (N, K)
    labels : tensor of shape (N,)
        Integer labels in ``[0, K)``.

    Returns
    -------
    dict
        ``{"validity", "confidence", "per_class": [{"label", "n", "validity", "confidence"}, ...]}``, one row per
        label present, in increasing label order.

    Examples
    --------
    >>> import torch
    >>> r = validity_from_logits(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 1, 1]))
    >>> round(r["validity"], 4), [row["validity"] for row in r["per_class"]]
    (0.6667, [1.0, 0.5])
    """
    logits, labels = logits.detach().float().cpu(), labels.detach().cpu().long()
    hit = (logits.argmax(1) == labels).float()
    conf = torch.softmax(logits, 1).gather(1, labels[:, None])[:, 0]
    per_class = [{"label": int(c), "n": int((labels == c).sum()), "validity": float(hit[labels == c].mean()),
                  "confidence": float(conf[labels == c].mean())} for c in labels.unique().tolist()]
    return {"validity": float(hit.mean()), "confidence": float(conf.mean()), "per_class": per_class}


@torch.no_grad()
def validity_report(classifier: Any, x: torch.Tensor, labels: torch.Tensor, batch_size: int = _BATCH) -> dict[str, Any]:
    """:func:`validity_from_logits` of ``classifier(x)``, computed in eval mode (its mode is restored)."""
    was_training = bool(getattr(classifier, "training", False))
    classifier.eval()
    try:
        device = next(iter(classifier.parameters()), torch.empty(0)).device
        logits = torch.cat([classifier(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])
    finally:
        classifier.train(was_training)
    return validity_from_logits(logits, labels)
