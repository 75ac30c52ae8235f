"""Classifiers: the zoo, training, and loading of run folders and foreign models."""

from . import _zoo  # noqa: F401  (registers mlp, cnn, resnet)
from ._base import MODELS, Classifier, build_model, list_models, register_model
from ._checkpoint import check_finite, check_sha256, load_classifier_run, path_for_card, read_weights, registry_name, resolve_recorded_path, save_classifier
from ._foreign import HookedClassifier, load_classifier
from ._pipeline import MEMBERS_NAME, ClassifierRunConfig, EvaluationResult, TrainingResult, load_members, run_evaluation, run_training
from ._train import OPTIMIZERS, TrainConfig, evaluate_classifier, pgd_attack, predict, train_classifier
from ._zoo import MLP, ResNetCNN, SmallCNN

__all__ = [
    "Classifier",
    "ClassifierRunConfig",
    "EvaluationResult",
    "HookedClassifier",
    "MODELS",
    "MLP",
    "ResNetCNN",
    "SmallCNN",
    "OPTIMIZERS",
    "TrainConfig",
    "TrainingResult",
    "build_model",
    "check_finite",
    "check_sha256",
    "read_weights",
    "evaluate_classifier",
    "list_models",
    "load_classifier",
    "load_classifier_run",
    "path_for_card",
    "pgd_attack",
    "predict",
    "register_model",
    "registry_name",
    "resolve_recorded_path",
    "run_evaluation",
    "run_training",
    "load_members",
    "MEMBERS_NAME",
    "save_classifier",
    "train_classifier",
]
