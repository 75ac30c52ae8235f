"""Training-like data reconstruction (issue 11): scoring reconstructions against members and non-members.

:func:`run_reconstruction` (``netinvert reconstruct``) inverts a classifier with the TLDR recipe
(the ``tldr`` preset: one-hot conditioning; KL and CE on clean and on perturbed samples, cosine,
orthogonality, total variation, pixel range and the per-sample weight-gradient norm) and scores
the reconstructions; :func:`run_reconstruction_evaluation` (``netinvert reconstruct evaluate``)
scores them again, e.g. against folders. Scoring: :func:`membership_report` (Hungarian matching by SSIM to members and to non-members,
counts at SSIM thresholds, the membership advantage with a bootstrap interval, and Haim et al.'s
NCC-then-SSIM protocol). Members come from a classifier trained with ``--subset``
(:func:`netinvert.models.load_members`). Baselines: :func:`optimise_inputs` (per-sample pixels under the
same losses) and :func:`kkt_reconstruct` (Haim et al.'s KKT attack in Buzaglo et al.'s multi-class form).
"""

from ._evaluate import THRESHOLDS, MatchResult, MembershipReport, haim_dssim, match, membership_report, ncc_matrix
from ._kkt import KKTResult, kkt_reconstruct
from ._per_sample import optimise_inputs
from ._pipeline import ReconstructConfig, ReconstructionResult, run_reconstruction, run_reconstruction_evaluation

__all__ = ["THRESHOLDS", "KKTResult", "MatchResult", "MembershipReport", "ReconstructConfig", "ReconstructionResult", "haim_dssim",
           "kkt_reconstruct", "match", "membership_report", "ncc_matrix", "optimise_inputs", "run_reconstruction", "run_reconstruction_evaluation"]
