"""Applications built on the classifier and inversion pipelines, one subpackage each.

- :mod:`netinvert.apps.ood`: out-of-distribution detection with an inverted garbage class
  (arXiv 2505.23448) beside the post-hoc detectors (MSP, max logit, energy, Mahalanobis).
- :mod:`netinvert.apps.reconstruct`: training-like data reconstruction (arXiv 2410.16884),
  scored against members and non-members.
- :mod:`netinvert.apps.adversarial`: an amortised perturbation generator and counterfeits
  (arXiv 2407.18002) beside PGD.
- :mod:`netinvert.apps.explain`: maps from inverted samples beside Integrated Gradients, with the
  randomisation sanity checks.

Each subpackage is imported on its own, so importing :mod:`netinvert.apps` costs nothing.
"""

__all__: list[str] = []
