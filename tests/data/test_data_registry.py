"""Registry contract: every registered dataset answers dataset_status without loading."""

from __future__ import annotations

import pytest

from netinvert.data import DATASETS, DatasetStatus, dataset_status, list_datasets, register_dataset
from netinvert.exceptions import UnknownNameError


def test_the_issue_names_are_registered():
    assert {"digits", "fashion-mnist", "mnist", "cifar10", "svhn", "image-folder"} <= set(list_datasets())


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_reports_a_status(name, tmp_path):
    status = dataset_status(name, tmp_path / "empty")
    assert isinstance(status, DatasetStatus) and status.name == name
    d = status.to_dict()
    assert set(d) == {"name", "available", "where", "hint", "input_shape", "n_classes"}
    if not status.available:
        assert status.hint  # an unavailable dataset always says why and what to do


def test_registry_entries_are_callable_loaders():
    data = DATASETS.get("digits")(None)
    assert data.name == "digits"


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="Valid names: .*fashion-mnist"):
        dataset_status("imagenet")


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("mnist")(lambda root: None)
