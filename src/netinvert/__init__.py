"""netinvert: open trained neural networks by inverting them."""

__version__ = "0.1.0"

from .data import Dataset, DatasetStatus, dataset_status, list_datasets, load_dataset  # noqa: E402
from .models import Classifier, HookedClassifier, TrainConfig, build_model, load_classifier, train_classifier  # noqa: E402
from .inversion import ImagePrior, Inverter, load_image_prior, train_image_prior  # noqa: E402
from .exceptions import (  # noqa: E402
    DatasetError,
    NetinvertError,
    NotFittedError,
    RunFormatError,
    TrainingDivergedError,
    UnknownNameError,
    UnsafeCheckpointError,
    UnsupportedLayerError,
)

__all__ = [
    "__version__",
    "Classifier",
    "Inverter",
    "ImagePrior",
    "train_image_prior",
    "load_image_prior",
    "HookedClassifier",
    "TrainConfig",
    "build_model",
    "load_classifier",
    "train_classifier",
    "Dataset",
    "DatasetStatus",
    "dataset_status",
    "list_datasets",
    "load_dataset",
    "DatasetError",
    "NetinvertError",
    "NotFittedError",
    "RunFormatError",
    "TrainingDivergedError",
    "UnknownNameError",
    "UnsafeCheckpointError",
    "UnsupportedLayerError",
]
