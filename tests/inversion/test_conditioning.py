"""Conditioning modes: what the generator sees, the target distribution and the hidden label."""

from __future__ import annotations

import pytest
import torch

from netinvert.exceptions import UnknownNameError
from netinvert.inversion import hot_matrix, list_conditionings, make_conditioning


@pytest.mark.parametrize("name", list_conditionings())
def test_every_mode_gives_labels_target_and_inputs_of_the_right_shape(name: str) -> None:
    cond = make_conditioning(name, 10)
    labels = torch.arange(30) % 10
    batch = cond(labels, torch.Generator().manual_seed(0))
    assert torch.equal(batch.labels, labels)
    assert batch.target.shape == (30, 10)
    assert torch.allclose(batch.target.sum(1), torch.ones(30))
    assert torch.equal(batch.target.argmax(1), labels)  # the label is always argmax P
    assert (batch.code is not None) == cond.uses_code
    assert (batch.matrix is not None) == cond.uses_matrix
    if batch.code is not None:
        assert batch.code.shape == (30, 10)
    if batch.matrix is not None:
        assert batch.matrix.shape == (30, 1, 10, 10)
    assert make_conditioning(name, 10).get_params()["n_classes"] == 10


def test_hot_matrix_sets_the_row_and_column_of_the_label() -> None:
    m = hot_matrix(torch.tensor([2]), 4)[0, 0]
    expected = torch.zeros(4, 4)
    expected[2, :] = 1
    expected[:, 2] = 1
    assert torch.equal(m, expected)


def test_vector_hides_the_label_in_a_soft_vector_and_temperature_sharpens_it() -> None:
    labels = torch.arange(2000) % 10
    soft = make_conditioning("vector", 10, temperature=1.0)(labels, torch.Generator().manual_seed(0))
    sharp = make_conditioning("vector", 10, temperature=0.1)(labels, torch.Generator().manual_seed(0))
    assert torch.equal(soft.code, soft.target)  # G sees p itself, not a one-hot label
    assert soft.target.max(1).values.mean() < 0.5 < sharp.target.max(1).values.mean()
    assert torch.equal(sharp.target.argmax(1), soft.target.argmax(1))  # T rescales, argmax unchanged


def test_near_ties_at_temperature_one_match_the_documented_seven_percent() -> None:
    # METHODS.md: with p = softmax(N(0, I)) over 10 classes the top two entries differ by < 0.01
    # in about 7% of draws; a smaller temperature makes such ties rare.
    labels = torch.arange(20000) % 10
    for temperature, low, high in ((1.0, 0.05, 0.09), (0.1, 0.0, 0.01)):
        p = make_conditioning("vector", 10, temperature=temperature)(labels, torch.Generator().manual_seed(1)).target
        top2 = p.topk(2, 1).values
        share = float(((top2[:, 0] - top2[:, 1]) < 0.01).float().mean())
        assert low <= share <= high, (temperature, share)


def test_vector_draws_are_reproducible_from_the_generator() -> None:
    cond = make_conditioning("vector+matrix", 5)
    labels = torch.arange(10) % 5
    a = cond(labels, torch.Generator().manual_seed(3))
    b = cond(labels, torch.Generator().manual_seed(3))
    assert torch.equal(a.target, b.target) and torch.equal(a.matrix, b.matrix)


def test_bad_names_and_parameters_are_rejected() -> None:
    with pytest.raises(UnknownNameError, match="Valid names: label, matrix, vector, vector\\+matrix"):
        make_conditioning("onehot", 10)
    with pytest.raises(ValueError, match="'temperature' parameter of VectorConditioning must be a float in \\(0, inf\\)"):
        make_conditioning("vector", 10, temperature=0)
    with pytest.raises(ValueError, match="'label' conditioning takes no parameter 'temperature'; it takes none"):
        make_conditioning("label", 10, temperature=0.5)  # a setting that would have no effect
    with pytest.raises(ValueError, match="'n_classes'"):
        make_conditioning("label", 1)
