"""OODMetrics: the standard cases, a hand-computed one, accumulation, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netinvert.apps.ood import METRIC_KEYS, OODMetrics


def metrics(in_scores, ood_scores) -> dict[str, float]:
    return OODMetrics().update(in_scores, False).update(ood_scores, True).compute()


def test_perfect_separation() -> None:
    m = metrics([0.1, 0.2, 0.3], [0.7, 0.8])
    assert tuple(m) == METRIC_KEYS == ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR")
    assert m == {"AUROC": 1.0, "AUPR-IN": 1.0, "AUPR-OUT": 1.0, "FPR95TPR": 0.0}
    assert all(type(v) is float for v in m.values())


def test_reversed_scores_are_the_worst_case() -> None:
    m = metrics([0.7, 0.8], [0.1, 0.2, 0.3])
    assert m["AUROC"] == 0.0 and m["FPR95TPR"] == 1.0


def test_identical_scores_are_uninformative() -> None:
    m = metrics(torch.full((6,), 0.4), torch.full((2,), 0.4))
    assert m["AUROC"] == 0.5
    assert m["FPR95TPR"] == 1.0  # catching any OOD means flagging every sample
    assert m["AUPR-OUT"] == pytest.approx(2 / 8) and m["AUPR-IN"] == pytest.approx(6 / 8)  # the prevalences


def test_small_case_by_hand() -> None:
    # Sorted by score: 0.8 OOD, 0.4 in, 0.35 in, 0.3 OOD, 0.1 in.
    m = metrics([0.1, 0.4, 0.35], [0.8, 0.3])
    # AUROC: of the 6 (OOD, in) pairs the OOD sample scores higher in 4 (0.8 beats all, 0.3 beats 0.1).
    assert m["AUROC"] == pytest.approx(4 / 6)
    # AUPR-OUT (average precision, OOD positive): recall 1/2 at precision 1, recall 1 at precision 2/4.
    assert m["AUPR-OUT"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    # AUPR-IN (in positive, score -s): in-samples found at ranks 1, 3, 4 -> precisions 1, 2/3, 3/4.
    assert m["AUPR-IN"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # FPR95: catching both OOD needs threshold 0.3, which also flags 0.4 and 0.35: 2 of 3 in-distribution.
    assert m["FPR95TPR"] == pytest.approx(2 / 3)


def test_fpr95_at_exactly_95_percent() -> None:
    # 20 OOD samples: the threshold 2 catches 19 of them (TPR exactly 0.95) and flags 10.5 and 30.
    m = metrics([1.5, 10.5, 30.0], np.arange(1, 21, dtype=float))
    assert m["FPR95TPR"] == pytest.approx(2 / 3)


def test_accumulates_across_batches_in_any_order_and_resets() -> None:
    g = torch.Generator().manual_seed(0)
    s_in, s_ood = torch.randn(40, generator=g), torch.randn(30, generator=g) + 1
    whole = metrics(s_in, s_ood)
    acc = OODMetrics()
    for a, b in zip(s_in.chunk(5), s_ood.chunk(5), strict=True):
        acc.update(b, torch.ones(len(b), dtype=torch.bool)).update(a.numpy(), [0] * len(a))
    assert len(acc) == 70
    assert acc.compute() == pytest.approx(whole)
    assert acc.reset() is acc and len(acc) == 0
    with pytest.raises(ValueError, match="has no scores"):
        acc.compute()


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"has no scores; call update\(scores, is_ood\)"):
        OODMetrics().compute()
    with pytest.raises(ValueError, match="got 3 in-distribution and 0 OOD ones: add some OOD samples"):
        OODMetrics().update([0.1, 0.2, 0.3], False).compute()
    with pytest.raises(ValueError, match="got 0 in-distribution and 2 OOD ones: add some in-distribution samples"):
        OODMetrics().update([0.1, 0.2], True).compute()
    with pytest.raises(ValueError, match=r"got 1 NaN and 0 infinite scores \(first at position 1"):
        OODMetrics().update([0.1, float("nan")], False)
    with pytest.raises(ValueError, match="got 0 NaN and 1 infinite scores"):
        OODMetrics().update(torch.tensor([float("inf")]), True)
    with pytest.raises(ValueError, match="must hold booleans or 0/1. Got values \\[0, 2\\]"):
        OODMetrics().update([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="got 2 scores but 3 is_ood flags"):
        OODMetrics().update([0.1, 0.2], [0, 1, 1])
