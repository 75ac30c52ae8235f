"""Generator-based network inversion: conditionings, generators, loss terms and the inverter.

A single conditional generator ``G(z, c)`` is trained against a frozen classifier so that the
classifier assigns ``G(z, c)`` the label hidden in ``c`` (Network Inversion, arXiv 2407.18002 and
2411.17777). Each part is a registry, so a new conditioning, generator or loss term plugs in by
name::

    from netinvert.inversion import Inverter
    inv = Inverter(classifier, conditioning="vector", losses=["ce:1", "cosine:1", "bn:0.2"]).fit(seconds=60)
    images = inv.sample(label=3, n=16, seed=0)

Every workflow is one function that writes a run folder (``docs/architecture.md``)::

    from netinvert.inversion import InversionRunConfig, run_inversion
    result = run_inversion(InversionRunConfig(classifier="runs/clf", steps=1000), out="runs/inv")

Recommended settings per kind of data are in :data:`PRESETS` (``Inverter(clf, **preset("fashion"))``):
augmentation of the generated batch before the classifier (``augment``), the ``image_stats`` and
``mode_seeking`` terms and an EMA copy of the generator (``ema``) are the parts that turned
Fashion-MNIST fooling textures into garment silhouettes (bench/results/inversion.md). Where
pixel-level priors still leave blobs, a decoder trained on unlabelled images of the domain
(:func:`train_image_prior`) confines the generator to its image manifold::

    prior, info = train_image_prior(unlabelled_images)
    inv = Inverter(classifier, image_prior=prior, **preset("fashion-prior")).fit(seconds=300)
"""

from ._augment import AUGMENTATIONS, Augmentation, list_augmentations, make_augmentation, register_augmentation
from ._conditioning import (
    CONDITIONINGS,
    ConditionBatch,
    Conditioning,
    LabelConditioning,
    MatrixConditioning,
    VectorConditioning,
    VectorMatrixConditioning,
    hot_matrix,
    list_conditionings,
    make_conditioning,
    register_conditioning,
)
from ._generators import GENERATORS, ConvGenerator, Generator, MLPGenerator, list_generators, make_generator, register_generator
from .._checkpoint import CHECKPOINT_NAME, read_checkpoint
from ._inverter import PAIR_SOURCES  # the choices of Inverter(pairs=...)
from ._inverter import DEFAULT_LOSSES, Inverter, default_losses
from ._pipeline import (
    InversionResult,
    InversionRunConfig,
    PriorResult,
    PriorRunConfig,
    SamplingResult,
    load_inversion_classifier,
    run_image_prior,
    run_inversion,
    run_sampling,
)
from ._presets import (
    LR_SCHEDULES,
    PRESETS,
    Preset,
    list_lr_schedules,
    list_presets,
    preset,
    register_lr_schedule,
    register_preset,
)
from ..metrics import validity_report  # re-exported: validity is computed in netinvert.metrics only
from ._prior import ImagePrior, PriorGenerator, load_image_prior, save_image_prior, train_image_prior
from ._losses import (
    LOSSES,
    LossContext,
    LossTerm,
    Objective,
    as_loss,
    capture_bn_stats,
    list_losses,
    make_loss,
    make_objective,
    register_loss,
)

__all__ = [
    "CHECKPOINT_NAME",
    "read_checkpoint",
    "InversionRunConfig",
    "InversionResult",
    "run_inversion",
    "PriorRunConfig",
    "PriorResult",
    "run_image_prior",
    "SamplingResult",
    "run_sampling",
    "load_inversion_classifier",
    "Preset",
    "list_presets",
    "register_preset",
    "LR_SCHEDULES",
    "list_lr_schedules",
    "register_lr_schedule",
    "ImagePrior",
    "PriorGenerator",
    "train_image_prior",
    "save_image_prior",
    "load_image_prior",
    "AUGMENTATIONS",
    "Augmentation",
    "list_augmentations",
    "make_augmentation",
    "register_augmentation",
    "PRESETS",
    "preset",
    "CONDITIONINGS",
    "ConditionBatch",
    "Conditioning",
    "LabelConditioning",
    "MatrixConditioning",
    "VectorConditioning",
    "VectorMatrixConditioning",
    "hot_matrix",
    "list_conditionings",
    "make_conditioning",
    "register_conditioning",
    "GENERATORS",
    "ConvGenerator",
    "Generator",
    "MLPGenerator",
    "list_generators",
    "make_generator",
    "register_generator",
    "DEFAULT_LOSSES",
    "default_losses",
    "Inverter",
    "PAIR_SOURCES",
    "validity_report",
    "LOSSES",
    "LossContext",
    "LossTerm",
    "Objective",
    "as_loss",
    "capture_bn_stats",
    "list_losses",
    "make_loss",
    "make_objective",
    "register_loss",
]
