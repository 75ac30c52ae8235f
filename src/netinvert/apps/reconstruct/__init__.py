"""Training-like data reconstruction (issue 11): scoring reconstructions against members and non-members.

So far: :func:`membership_report` (Hungarian matching by SSIM to members and to non-members,
counts at SSIM thresholds, the membership advantage with a bootstrap interval, and Haim et al.'s
NCC-then-SSIM protocol). Members come from a classifier trained with ``--subset``
(:func:`netinvert.models.load_members`).
"""

from ._evaluate import THRESHOLDS, MatchResult, MembershipReport, haim_dssim, match, membership_report, ncc_matrix

__all__ = ["THRESHOLDS", "MatchResult", "MembershipReport", "haim_dssim", "match", "membership_report", "ncc_matrix"]
