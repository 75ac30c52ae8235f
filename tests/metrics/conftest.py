"""Digits verifiers trained once per session (the data and the target CNN come from tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from netinvert.data import Dataset
from netinvert.metrics import train_verifiers


@pytest.fixture(scope="session")
def verifier_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("verifiers")


@pytest.fixture(scope="session")
def verifiers(digits: Dataset, verifier_cache):
    """The default recipe, cached so the cache tests can reload it without retraining."""
    return train_verifiers(digits, seed=1, cache_dir=verifier_cache)


@pytest.fixture(scope="session")
def split(digits: Dataset) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """Half the test split as "samples", the other half as the real reference of the report.

    Disjoint halves, so real images scored as samples are compared with other real images.
    """
    perm = torch.randperm(len(digits.x_test), generator=torch.Generator().manual_seed(3))
    ref, held = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    reference = Dataset(
        digits.name, digits.x_train, digits.y_train, digits.x_test[ref], digits.y_test[ref],
        digits.class_names, digits.source, digits.mean, digits.std,
    )
    return reference, digits.x_test[held], digits.y_test[held]
