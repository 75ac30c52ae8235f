"""Classifiers: the zoo, training, and loading of run folders and foreign models."""

from . import _zoo  # noqa: F401  (registers mlp, cnn, resnet)
from ._base import MODELS, Classifier, build_model, list_models, register_model
from ._train import TrainConfig, evaluate_classifier, predict, train_classifier
from ._zoo import MLP, ResNetCNN, SmallCNN

__all__ = [
    "Classifier",
    "MODELS",
    "MLP",
    "ResNetCNN",
    "SmallCNN",
    "TrainConfig",
    "build_model",
    "evaluate_classifier",
    "list_models",
    "predict",
    "register_model",
    "train_classifier",
]
