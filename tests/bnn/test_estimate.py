"""Label shares by uniform sampling against exact brute-force counts on tiny nets."""

from __future__ import annotations

import numpy as np
import pytest

from netinvert.bnn import export_bnn
from netinvert.bnn import estimate_label_shares

from bnn_helpers import all_inputs, random_bnn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_shares_bracket_the_exact_counts(seed: int) -> None:
    net = export_bnn(random_bnn(12, (6,), 4, seed=seed))
    exact = np.bincount(net.predict(all_inputs(12)), minlength=4)
    shares = estimate_label_shares(net, 200_000, confidence=0.999, seed=seed)
    assert sum(s.hits for s in shares) == 200_000
    for s, c in zip(shares, exact):
        assert s.low <= c / 2**12 <= s.high, (s, c)
        assert s.contains_count(int(c))
        assert abs(s.count_estimate - c) < 0.02 * 2**12
    # an interval is not a blank cheque: a count off by a tenth of the space falls outside it
    biggest = max(shares, key=lambda s: s.share)
    assert not biggest.contains_count(int(exact[biggest.label] + 0.1 * 2**12))


def test_wide_nets_do_not_overflow() -> None:
    # 1100 inputs: 2 ** 1100 is beyond a float; the estimate stays an exact integer
    net = export_bnn(random_bnn(1100, (4,), 2, seed=3))
    s = estimate_label_shares(net, 2_000, seed=0)
    assert sum(r.count_estimate for r in s) in (2**1100 - 1, 2**1100, 2**1100 + 1)
    assert s[0].contains_count(s[0].count_estimate) and s[0].to_dict()["count_estimate"] == s[0].count_estimate


def test_shares_are_reproducible_and_arguments_checked() -> None:
    net = export_bnn(random_bnn(10, (5,), 3, seed=4))
    a = estimate_label_shares(net, 5_000, seed=7)
    b = estimate_label_shares(net, 5_000, seed=7)
    assert [s.hits for s in a] == [s.hits for s in b]
    assert [s.hits for s in a] != [s.hits for s in estimate_label_shares(net, 5_000, seed=8)]
    with pytest.raises(ValueError, match="n_samples"):
        estimate_label_shares(net, 0)
    with pytest.raises(ValueError, match="confidence"):
        estimate_label_shares(net, 10, confidence=1.0)
