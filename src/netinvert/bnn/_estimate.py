"""Label shares of the whole input space by uniform sampling, with confidence intervals.

Exact and PAC counters (:mod:`._count`) stop at a few dozen inputs on trained nets; a 784-input
net's counts are out of their reach entirely. The share of all ``2 ** n`` inputs that a net
assigns each label is still well defined, and uniform sampling through the integer net
estimates it to any precision with an honest interval: it says how much of the input space
each label owns (for a 784-input net, almost all of it belongs to one or two labels), and it
cross-checks an approximate counter's answers (``count / 2 ** n`` must fall in the interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.stats import norm

from ._export import IntegerBNN

__all__ = ["LabelShare", "estimate_label_shares"]


@dataclass(frozen=True)
class LabelShare:
    """The share of inputs labelled ``label`` among ``n_samples`` uniform draws, with a Wilson interval."""

    label: int
    hits: int
    n_samples: int
    low: float
    high: float
    n_inputs: int

    @property
    def share(self) -> float:
        """``hits / n_samples``: the estimated fraction of all inputs with this label."""
        return self.hits / self.n_samples

    @property
    def count_estimate(self) -> int:
        """``hits / n_samples * 2 ** n_inputs``, rounded: the estimated number of preimages (exact
        integer arithmetic, so that nets of a thousand inputs and more do not overflow a float)."""
        return round(Fraction(self.hits, self.n_samples) * 2**self.n_inputs)

    def contains_count(self, count: int) -> bool:
        """Whether a count of preimages is consistent with the interval."""
        share = Fraction(int(count), 2**self.n_inputs)
        return Fraction(self.low) <= share <= Fraction(self.high)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "hits": self.hits, "n_samples": self.n_samples, "share": self.share,
                "low": self.low, "high": self.high, "count_estimate": self.count_estimate}


_BLOCK = 65_536  # inputs drawn and evaluated at a time; fixed so that the draws depend on the seed alone


def _wilson(hits: int, n: int, z: float) -> tuple[float, float]:
    if hits in (0, n):  # the closed form is exact at the ends; avoid its rounding there
        bound = z * z / (n + z * z)
        return (0.0, bound) if hits == 0 else (1.0 - bound, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate_label_shares(net: IntegerBNN, n_samples: int = 1_000_000, *, confidence: float = 0.99,
                          seed: int = 0) -> list[LabelShare]:
    """Share of uniformly random inputs the integer net assigns each label.

    Parameters
    ----------
    net : IntegerBNN
    n_samples : int
        Uniform draws from ``{0, 1} ** n_inputs``.
    confidence : float in (0, 1)
        Level of each label's (two-sided, Wilson score) interval; no correction across labels.
    seed : int
        The draws are reproducible from it.

    Returns
    -------
    list of LabelShare, one per label
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"The 'n_samples' parameter of estimate_label_shares must be an int in [1, inf). Got {n_samples!r} instead.")
    if not 0 < confidence < 1:
        raise ValueError(f"The 'confidence' parameter of estimate_label_shares must be a float in (0, 1). Got {confidence!r} instead.")
    rng = np.random.default_rng(seed)
    hits = np.zeros(net.n_classes, dtype=np.int64)
    done = 0
    while done < n_samples:
        m = min(_BLOCK, n_samples - done)
        bits = rng.integers(0, 2, size=(m, net.n_inputs), dtype=np.int8)
        hits += np.bincount(net.predict(bits), minlength=net.n_classes)
        done += m
    z = float(norm.ppf(0.5 + confidence / 2))
    return [LabelShare(k, int(h), n_samples, *_wilson(int(h), n_samples, z), net.n_inputs) for k, h in enumerate(hits)]
