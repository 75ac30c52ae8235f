"""Adversarial examples: an amortised attack generator, PGD baselines and counterfeits.

- :class:`AdversarialGenerator`: a small network ``G(x, c, z)`` trained once against a frozen
  classifier that outputs a perturbation inside an L-inf or L2 ball (the norm's ``squash``), so one
  forward pass gives an adversarial example, and, with the noise ``z`` and dropout, several distinct
  ones per input. The goal ``c`` is untargeted, or a target hidden in the project's conditioning vector
  (:mod:`netinvert.inversion._conditioning`).
- :class:`PGD`: projected gradient descent with a random start (Madry et al., arXiv 1706.06083),
  targeted or untargeted, in any registered norm (:func:`list_norms`: ``linf``, ``l2``; each a
  :class:`Norm` with its random start, step, projection and squash).
- Counterfeits (no budget): inverted samples the classifier accepts with high confidence while both
  independent verifiers (:func:`netinvert.metrics.train_verifiers`) agree on another label.

Workflows (``docs/architecture.md``): :func:`run_adversarial_training` (``netinvert adversarial train``)
writes a generator run; :func:`run_attack` (``netinvert adversarial attack``) measures it beside PGD and
torchattacks' PGD (when installed): success, per-target success, perturbation norms, milliseconds per
example and transfer to the verifiers.

Examples
--------
>>> import torch
>>> from netinvert.apps.adversarial import PGD
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
>>> x = torch.full((3, 1, 2, 2), 0.5)
>>> x_adv = PGD(model, eps=0.1, norm="linf", steps=5)(x, torch.tensor([0, 1, 0]))
>>> bool(((x_adv - x).abs() <= 0.1 + 1e-6).all())
True
"""

from ._attacks import (LOSSES, NORMS, PGD, L2Norm, LinfNorm, Norm, check_eps, list_attack_losses, list_norms, make_norm,
                       margin_loss, register_norm)
from ._generator import (GENERATOR_CONDITIONINGS, GENERATOR_DRAWS, GENERATOR_LOSSES, GENERATOR_OUTPUTS, AdversarialGenerator,
                         PerturbationNet, list_generator_draws, list_generator_losses, list_generator_outputs,
                         register_generator_loss)
from ._pipeline import (GENERATOR_KIND, SPLITS, TORCHATTACKS_CLASSES, AdversarialRunConfig, AdversarialTrainingResult,
                        AttackConfig, AttackResult, load_generator_run, run_adversarial_training, run_attack)

__all__ = [
    "AdversarialGenerator",
    "AdversarialRunConfig",
    "AdversarialTrainingResult",
    "AttackConfig",
    "AttackResult",
    "GENERATOR_CONDITIONINGS",
    "GENERATOR_DRAWS",
    "GENERATOR_KIND",
    "GENERATOR_LOSSES",
    "GENERATOR_OUTPUTS",
    "L2Norm",
    "LOSSES",
    "LinfNorm",
    "NORMS",
    "Norm",
    "PGD",
    "PerturbationNet",
    "SPLITS",
    "TORCHATTACKS_CLASSES",
    "check_eps",
    "list_attack_losses",
    "list_generator_draws",
    "list_generator_losses",
    "list_generator_outputs",
    "list_norms",
    "load_generator_run",
    "make_norm",
    "margin_loss",
    "register_generator_loss",
    "register_norm",
    "run_adversarial_training",
    "run_attack",
]
