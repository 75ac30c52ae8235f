"""Explanations of a classifier from its inversion, beside Captum's attributions, with sanity checks.

:func:`run_explain` (config :class:`ExplainConfig`; ``netinvert explain``) turns an inversion run
into per-class galleries, pixel mean and variance maps, boundary paths between labels, Integrated
Gradients maps of the test images (:func:`class_attribution_maps`, methods in
:func:`list_attributions`), and the model- and label-randomisation tests of Adebayo et al. 2018
(:func:`cascading_randomisation`, :func:`map_ssim`).
"""

from ._attribution import ATTRIBUTIONS, Attribution, class_attribution_maps, list_attributions, register_attribution
from ._pipeline import SSIM_PASS, ExplainConfig, ExplainResult, run_explain
from ._sanity import cascading_randomisation, map_ssim, parameter_layers, scale_maps

__all__ = [
    "ATTRIBUTIONS",
    "Attribution",
    "ExplainConfig",
    "ExplainResult",
    "SSIM_PASS",
    "cascading_randomisation",
    "class_attribution_maps",
    "list_attributions",
    "map_ssim",
    "parameter_layers",
    "register_attribution",
    "run_explain",
    "scale_maps",
]
