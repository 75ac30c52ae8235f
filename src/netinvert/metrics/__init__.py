"""Honest quality metrics for inverted samples.

Every figure is reported beside the same figure for real data, in spaces a loss does not
optimise: accuracy under a plain and an adversarially trained verifier (:func:`train_verifiers`),
the Frechet distance in the robust verifier's features (:func:`frechet_distance`), SSIM to the
nearest training image (:func:`nearest_ssim`) and within-class diversity
(:func:`mean_pairwise_cosine`) in three spaces. :func:`inversion_metrics` and the
:class:`InversionMetrics` accumulator assemble them into the report stored as ``metrics.json``;
:func:`validity_report` is validity and confidence alone (the one implementation every report uses).
"""

from ._diversity import mean_pairwise_cosine
from ._frechet import frechet_distance
from ._inversion import InversionMetrics, inversion_metrics
from ._similarity import nearest_ssim, paired_ssim, ssim_matrix
from ._validity import validity_from_logits, validity_report
from ._verifiers import Verifiers, train_verifiers

__all__ = [
    "InversionMetrics",
    "Verifiers",
    "frechet_distance",
    "inversion_metrics",
    "mean_pairwise_cosine",
    "nearest_ssim",
    "paired_ssim",
    "ssim_matrix",
    "train_verifiers",
    "validity_from_logits",
    "validity_report",
]
