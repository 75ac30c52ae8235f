"""Shared fixtures: the real digits data and one small CNN trained on it once per session.

The trained CNN costs about a second; tests that need "a real trained classifier" share it
instead of training their own. Do not train or modify it in place: ``copy.deepcopy`` it first.
"""

from __future__ import annotations

import pytest
import torch

from netinvert._device import seed_everything
from netinvert.data import Dataset, load_dataset
from netinvert.models import Classifier, TrainConfig, build_model, evaluate_classifier, save_classifier, train_classifier

# The suite runs on 2-core machines next to other jobs; with tiny models one thread is faster
# than two fighting over the cores, and it makes timings stable.
torch.set_num_threads(1)

#: Architecture and schedule of the shared digits CNN (>= 0.95 test accuracy in ~1 s).
DIGITS_CNN_PARAMS = {"channels": [16, 32], "hidden": 64}
DIGITS_CNN_CONFIG = TrainConfig(epochs=3, batch_size=64, lr=3e-3, seed=0, device="cpu")


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """scikit-learn's 8x8 digits with netinvert's fixed train/test split."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_cnn(digits: Dataset) -> Classifier:
    """A small CNN trained on digits (eval mode, CPU); read-only, deepcopy before changing it."""
    seed_everything(DIGITS_CNN_CONFIG.seed)
    model = build_model("cnn", input_shape=digits.input_shape, n_classes=digits.n_classes,
                        mean=digits.mean, std=digits.std, **DIGITS_CNN_PARAMS)
    train_classifier(model, digits, DIGITS_CNN_CONFIG, progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def digits_cnn_run(digits_cnn: Classifier, digits: Dataset, tmp_path_factory: pytest.TempPathFactory):
    """Run folder (``card.json`` + ``weights.safetensors``) of :func:`digits_cnn`, as ``netinvert train`` writes it."""
    run = tmp_path_factory.mktemp("digits_cnn_run")
    acc = evaluate_classifier(digits_cnn, digits.x_test, digits.y_test)
    save_classifier(digits_cnn, run, {"dataset": digits.name, "dataset_info": digits.describe(),
                                      "train_config": DIGITS_CNN_CONFIG.to_dict(), "seed": DIGITS_CNN_CONFIG.seed,
                                      "test_accuracy": acc, "n_test": len(digits.x_test)})
    return run
