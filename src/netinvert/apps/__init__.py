"""Applications built on the classifier and inversion pipelines, one subpackage each.

- :mod:`netinvert.apps.ood`: out-of-distribution detection (detectors, metrics, OOD sets; the
  garbage-class training of arXiv 2411.17777 / 2407.18002 builds on them).

Planned: ``reconstruct``, ``adversarial`` and ``explain`` (see ``docs/architecture.md``). Each
subpackage is imported on its own, so importing :mod:`netinvert.apps` costs nothing.
"""

__all__: list[str] = []
