"""Dataset.select_classes / held_out_test: the near-OOD split of the OOD application."""

from __future__ import annotations

import pytest
import torch

from netinvert.data import load_dataset


def test_select_classes_relabels_in_the_given_order() -> None:
    data = load_dataset("digits")
    sub = data.select_classes([7, 2, 5])
    assert sub.n_classes == 3 and sub.class_names == (data.class_names[7], data.class_names[2], data.class_names[5])
    assert len(sub.x_train) == int(torch.isin(data.y_train, torch.tensor([7, 2, 5])).sum())
    # Every kept image keeps its pixels and maps to the new index of its old class.
    old_of_new = torch.tensor([7, 2, 5])
    first_seven = data.x_train[data.y_train == 7][0]
    assert torch.equal(sub.x_train[sub.y_train == 0][0], first_seven)
    assert set(sub.y_test.tolist()) == {0, 1, 2}
    assert torch.equal(old_of_new[sub.y_test], data.y_test[torch.isin(data.y_test, old_of_new)])
    # Statistics are those of the kept images, not of the whole set.
    assert sub.mean[0] == pytest.approx(float(sub.x_train.mean()), abs=1e-6)


def test_held_out_test_is_the_complement() -> None:
    data = load_dataset("digits")
    held = data.held_out_test([0, 1, 2, 3, 4, 5])
    kept = data.select_classes([0, 1, 2, 3, 4, 5])
    assert len(held) + len(kept.x_test) == len(data.x_test)
    assert torch.equal(held, data.x_test[data.y_test >= 6])


@pytest.mark.parametrize("classes", [[], [0, 0], [10], [-1], list(range(10)), "012", [True]])
def test_bad_classes_are_refused(classes: object) -> None:
    with pytest.raises(ValueError, match="'classes' parameter must be distinct ints in \\[0, 9\\]"):
        load_dataset("digits").select_classes(classes)  # type: ignore[arg-type]
