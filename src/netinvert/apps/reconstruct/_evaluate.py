"""Scoring reconstructions against members and non-members: is it leakage, or only likeness to the dataset?

A reconstruction attack claims to recover *training* images. Looking like the dataset is not enough
(arXiv 2412.08544): a model's reconstructions can resemble images it never saw. So every score here
is computed twice, against the members (the images the model trained on) and against an equal-size
non-member set drawn from the same split, and the claim is the difference:

- one-to-one matching (the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``, maximising
  total SSIM) of reconstructions to members and, separately, to non-members;
- counts of matched pairs at SSIM >= 0.4, 0.5, 0.6, 0.7;
- the membership advantage: mean matched SSIM with members minus with non-members, with a paired
  bootstrap 95% interval over reconstructions;
- the protocol of Haim et al. 2022 (arXiv 2206.07758), so numbers compare with theirs: for each
  training image, its nearest reconstruction by normalised cross-correlation, then their SSIM; the
  mean DSSIM = (1 - SSIM) / 2 of the best ten.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ...metrics import paired_ssim, ssim_matrix

__all__ = ["THRESHOLDS", "MatchResult", "MembershipReport", "haim_dssim", "match", "membership_report", "ncc_matrix"]

#: SSIM thresholds at which matched pairs are counted.
THRESHOLDS = (0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class MatchResult:
    """A one-to-one matching: reconstruction ``rows[i]`` with reference ``cols[i]`` at SSIM ``ssim[i]``."""

    rows: torch.Tensor
    cols: torch.Tensor
    ssim: torch.Tensor

    def counts(self) -> dict[str, int]:
        """Matched pairs at SSIM >= each of :data:`THRESHOLDS`."""
        return {f">={t}": int((self.ssim >= t).sum()) for t in THRESHOLDS}


def match(similarity: torch.Tensor) -> MatchResult:
    """Hungarian matching maximising the total similarity of ``(n_reconstructions, n_references)``.

    Every reconstruction is matched when there are at least as many references as reconstructions
    (else every reference is); ``rows`` is sorted.
    """
    from scipy.optimize import linear_sum_assignment

    if similarity.dim() != 2 or 0 in similarity.shape:
        raise ValueError(f"match needs a non-empty (reconstructions, references) matrix. Got shape {tuple(similarity.shape)} instead.")
    rows, cols = linear_sum_assignment(similarity.double().numpy(), maximize=True)
    rows_t, cols_t = torch.from_numpy(rows).long(), torch.from_numpy(cols).long()
    return MatchResult(rows_t, cols_t, similarity[rows_t, cols_t].float())


def ncc_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Normalised cross-correlation ``(len(a), len(b))``: cosine similarity of the mean-centred images."""
    def unit(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1).double()
        flat = flat - flat.mean(1, keepdim=True)
        return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return (unit(a) @ unit(b).T).float()


def haim_dssim(reconstructions: torch.Tensor, references: torch.Tensor, best: int = 10) -> dict[str, Any]:
    """Haim et al.'s protocol: each reference's nearest reconstruction by NCC, their SSIM; mean DSSIM of the best ``best``.

    Returns ``{"mean_dssim_best": float, "ssim": per-reference SSIM list, "nearest": per-reference index}``.
    """
    nearest = ncc_matrix(references, reconstructions).argmax(1)
    ssim = paired_ssim(references, reconstructions[nearest])
    dssim = (1 - ssim) / 2
    k = min(best, len(dssim))
    return {"mean_dssim_best": float(dssim.sort().values[:k].mean()), "best": k, "ssim": ssim.tolist(),
            "nearest": nearest.tolist()}


@dataclass(frozen=True)
class MembershipReport:
    """Reconstructions scored against members and non-members (see the module docstring)."""

    n_reconstructions: int
    n_members: int
    n_non_members: int
    member_mean_ssim: float
    non_member_mean_ssim: float
    advantage: float
    advantage_ci95: tuple[float, float]
    member_counts: dict[str, int]
    non_member_counts: dict[str, int]
    haim_member_dssim: float
    haim_non_member_dssim: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["advantage_ci95"] = list(self.advantage_ci95)
        return d


def membership_report(reconstructions: torch.Tensor, members: torch.Tensor, non_members: torch.Tensor, *,
                      n_bootstrap: int = 2000, seed: int = 0,
                      device: str | torch.device | None = None) -> tuple[MembershipReport, dict[str, Any]]:
    """Score ``reconstructions`` against ``members`` and ``non_members`` (all ``(N, C, H, W)`` in [0, 1]).

    The two matchings are separate; the advantage's interval is a paired bootstrap over
    reconstructions (each reconstruction carries its matched member SSIM and its matched
    non-member SSIM), 2.5 and 97.5 percentiles. Returns the report and the details behind it
    (matchings and similarity matrices) for galleries. ``device`` is where the SSIM matrices are
    computed (:func:`~netinvert.metrics.ssim_matrix`; default the CPU).

    Raises
    ------
    ValueError
        If a set is empty, shapes differ, or there are fewer members or non-members than reconstructions
        (every reconstruction must get a partner in both matchings, or the comparison is unequal).
    """
    for name, x in (("reconstructions", reconstructions), ("members", members), ("non_members", non_members)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) == 0:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"The '{name}' parameter of membership_report must be a non-empty (N, C, H, W) tensor. Got {got} instead.")
        if x.shape[1:] != reconstructions.shape[1:]:
            raise ValueError(f"The '{name}' parameter of membership_report has images of shape {tuple(x.shape[1:])}; the "
                             f"reconstructions have {tuple(reconstructions.shape[1:])}.")
    if len(members) < len(reconstructions) or len(non_members) < len(reconstructions):
        raise ValueError(f"membership_report matches each of the {len(reconstructions)} reconstructions once with a member and "
                         f"once with a non-member; got only {len(members)} members and {len(non_members)} non-members.")
    sim_m, sim_n = (ssim_matrix(reconstructions, x, device=device) for x in (members, non_members))
    mm, mn = match(sim_m), match(sim_n)
    a, b = mm.ssim.double().numpy(), mn.ssim.double().numpy()  # rows are sorted: index i is reconstruction i in both
    diff = a - b
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, len(diff), size=(n_bootstrap, len(diff)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    haim_m, haim_n = haim_dssim(reconstructions, members), haim_dssim(reconstructions, non_members)
    report = MembershipReport(
        n_reconstructions=len(reconstructions), n_members=len(members), n_non_members=len(non_members),
        member_mean_ssim=float(a.mean()), non_member_mean_ssim=float(b.mean()), advantage=float(diff.mean()),
        advantage_ci95=(float(lo), float(hi)), member_counts=mm.counts(), non_member_counts=mn.counts(),
        haim_member_dssim=haim_m["mean_dssim_best"], haim_non_member_dssim=haim_n["mean_dssim_best"])
    return report, {"member_match": mm, "non_member_match": mn, "member_similarity": sim_m,
                    "non_member_similarity": sim_n, "haim_members": haim_m, "haim_non_members": haim_n}
