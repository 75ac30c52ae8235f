"""Out-of-distribution detection: detectors, metrics and offline OOD sets.

The building blocks of the garbage-class method (arXiv 2411.17777, 2407.18002: an ``(n+1)``-class
classifier whose extra class is fed noise and inverted samples) and of the post-hoc baselines it is
compared with. Scores follow pytorch-ood's conventions (https://github.com/kkirchheim/pytorch-ood):
higher = more OOD, OOD is the positive class.

Detectors (:func:`make_detector`, :func:`list_detectors`), each with ``fit(data) -> self``,
``predict(x) -> scores`` and, where the score depends on logits only, a pure
``@staticmethod score(logits)``:

- ``msp``, :class:`MaxSoftmax`: ``-max_k p_k`` (Hendrycks & Gimpel 2017, arXiv 1610.02136)
- ``max-logit``, :class:`MaxLogit`: ``-max_k f_k`` (Hendrycks et al. 2022, arXiv 1911.11132)
- ``energy``, :class:`Energy`: ``-T logsumexp(f / T)`` (Liu et al. 2020, arXiv 2010.03759)
- ``mahalanobis``, :class:`Mahalanobis`: ``min_c (z - mu_c)^T Sigma^-1 (z - mu_c)`` on penultimate
  features ``z``, class means ``mu_c`` and a tied covariance ``Sigma`` (Lee et al. 2018, arXiv 1807.03888)
- ``garbage``, :class:`GarbageProbability`: ``p_g`` of the garbage class (the last by default)
- ``ue``, :class:`Uncertainty`: ``UE(p) = 1 - sum_i (p_i - 1/K)^2 / sum_i (delta_ik - 1/K)^2``
  with ``k = argmax p`` (1 for uniform ``p``, 0 for one-hot)

where ``f`` are the logits, ``p = softmax(f)`` and ``K`` the number of classes (``n + 1`` for a
garbage-class model).

The garbage-class loop (arXiv 2505.23448): :func:`run_ood` (config :class:`OODRunConfig`) widens a
classifier by a garbage class (:func:`widen_head`), seeds it with noise, and each round inverts the
model and adds the inverted samples a selection rule picks (:func:`list_selections`) before retraining
with class-weighted cross-entropy; :func:`run_ood_evaluation` scores it and the baselines on OOD sets.

Operating point: :func:`calibrate_garbage_bias` picks the largest bias on the garbage logit that
costs at most an accuracy budget on the in-distribution validation split; :func:`garbage_argmax`
predicts with it. :func:`run_ood` stores it, :func:`run_ood_evaluation` applies it.

Metrics: :class:`OODMetrics`, an accumulator (``update(scores, is_ood) -> self``, ``compute()``,
``reset()``) giving ``AUROC``, ``AUPR-IN``, ``AUPR-OUT`` and ``FPR95TPR`` via scikit-learn.

OOD sets: :func:`load_ood_set` (names from :func:`list_ood_sets`) returns ``(n, C, H, W)`` images in
[0, 1] in the in-distribution shape: uniform and Gaussian noise, Fashion-MNIST with inverted
intensities, and any registered dataset converted by :func:`convert_images` (grey-scale, resized
with antialiasing).

Examples
--------
>>> import torch
>>> from netinvert.apps.ood import OODMetrics, make_detector
>>> msp = make_detector("msp")
>>> in_scores = msp.predict_logits(torch.tensor([[5.0, 0.0], [0.0, 4.0]]))
>>> ood_scores = msp.predict_logits(torch.tensor([[0.1, 0.0], [0.0, 0.2]]))
>>> OODMetrics().update(in_scores, False).update(ood_scores, True).compute()["AUROC"]
1.0
"""

from ._detectors import (
    DETECTORS,
    Detector,
    Energy,
    GarbageProbability,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    Uncertainty,
    list_detectors,
    make_detector,
    register_detector,
)
from ._garbage import (SELECTIONS, Selection, balanced_class_weights, list_selections, make_selection,
                       register_selection, widen_head)
from ._metrics import METRIC_KEYS, OODMetrics
from ._operating_point import calibrate_garbage_bias, garbage_argmax
from ._pipeline import (BASELINE_DETECTORS, GARBAGE_DETECTORS, OODEvaluationResult, OODResult, OODRunConfig, run_ood,
                        run_ood_evaluation)
from ._sets import (
    LUMA_WEIGHTS,
    OOD_SETS,
    OODSet,
    convert_images,
    list_ood_sets,
    load_ood_set,
    ood_from_dataset,
    register_ood_set,
)

__all__ = [
    "BASELINE_DETECTORS",
    "GARBAGE_DETECTORS",
    "OODEvaluationResult",
    "OODResult",
    "OODRunConfig",
    "SELECTIONS",
    "Selection",
    "balanced_class_weights",
    "calibrate_garbage_bias",
    "garbage_argmax",
    "list_selections",
    "make_selection",
    "register_selection",
    "run_ood",
    "run_ood_evaluation",
    "widen_head",
    "DETECTORS",
    "Detector",
    "Energy",
    "GarbageProbability",
    "LUMA_WEIGHTS",
    "METRIC_KEYS",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "OODMetrics",
    "OODSet",
    "OOD_SETS",
    "Uncertainty",
    "convert_images",
    "list_detectors",
    "list_ood_sets",
    "load_ood_set",
    "make_detector",
    "ood_from_dataset",
    "register_detector",
    "register_ood_set",
]
