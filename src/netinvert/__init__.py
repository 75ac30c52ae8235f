"""netinvert: open trained neural networks by inverting them."""

__version__ = "0.1.0"

from .data import Dataset, DatasetStatus, dataset_status, list_datasets, load_dataset  # noqa: E402
from .models import (  # noqa: E402
    Classifier,
    ClassifierRunConfig,
    EvaluationResult,
    HookedClassifier,
    TrainConfig,
    TrainingResult,
    build_model,
    load_classifier,
    run_evaluation,
    run_training,
    train_classifier,
)
from .inversion import (  # noqa: E402
    ImagePrior,
    InversionResult,
    InversionRunConfig,
    Inverter,
    PriorResult,
    PriorRunConfig,
    SamplingResult,
    load_image_prior,
    run_image_prior,
    run_inversion,
    run_sampling,
    train_image_prior,
)

#: Names served from subpackages that are imported on first use: the SAT side pulls in PySAT and
#: SciPy's statistics, which ``netinvert --help`` and generator-only users should not wait for.
_LAZY = {name: "bnn" for name in ("BNNQueryResult", "BNNRunConfig", "BNNTrainingResult", "run_bnn_query", "run_bnn_training")}
_LAZY.update({name: "report" for name in ("DemoConfig", "DemoResult", "run_demo")})
_LAZY.update({name: "report" for name in ("ReportResult", "write_html_report")})


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'netinvert' has no attribute {name!r}")

from .exceptions import (  # noqa: E402
    DatasetError,
    NetinvertError,
    NotFittedError,
    ResumeRefusedError,
    RunFormatError,
    TrainingDivergedError,
    UnknownNameError,
    UnsafeCheckpointError,
    UnsupportedLayerError,
    RunExistsError,
    RunLockedError,
    SolverLimitError,
)

__all__ = [
    "__version__",
    # workflows: each writes one complete run folder and returns a frozen result (docs/architecture.md)
    "ClassifierRunConfig", "TrainingResult", "run_training",
    "EvaluationResult", "run_evaluation",
    "InversionRunConfig", "InversionResult", "run_inversion",
    "PriorRunConfig", "PriorResult", "run_image_prior",
    "SamplingResult", "run_sampling",
    "BNNRunConfig", "BNNTrainingResult", "run_bnn_training",
    "BNNQueryResult", "run_bnn_query",
    "DemoConfig", "DemoResult", "run_demo",
    "ReportResult", "write_html_report",
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
    "ResumeRefusedError",
    "RunFormatError",
    "TrainingDivergedError",
    "UnknownNameError",
    "UnsafeCheckpointError",
    "UnsupportedLayerError",
    "RunExistsError",
    "RunLockedError",
    "SolverLimitError",
]
