import math

import numpy as np
import pytest
import torch

from netinvert.metrics import mean_pairwise_cosine


def test_identical_vectors_give_one():
    assert mean_pairwise_cosine(torch.tensor([[1.0, 2.0, 3.0]] * 5)) == pytest.approx(1.0)


def test_orthogonal_vectors_give_zero():
    assert mean_pairwise_cosine(torch.eye(4)) == pytest.approx(0.0)


def test_hand_computed_mixture():
    # pairs: (e1, e2) -> 0, (e1, e1+e2) -> 1/sqrt(2), (e2, e1+e2) -> 1/sqrt(2); mean over 3 pairs.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert mean_pairwise_cosine(x) == pytest.approx(2 / math.sqrt(2) / 3)


def test_scale_invariant_and_opposite_is_minus_one():
    assert mean_pairwise_cosine([[1.0, 0.0], [5.0, 0.0]]) == pytest.approx(1.0)
    assert mean_pairwise_cosine([[1.0, 0.0], [-3.0, 0.0]]) == pytest.approx(-1.0)


def test_images_are_flattened():
    imgs = torch.zeros(3, 1, 2, 2)
    imgs[0, 0, 0, 0] = imgs[1, 0, 1, 1] = imgs[2, 0, 0, 1] = 1.0
    assert mean_pairwise_cosine(imgs) == pytest.approx(0.0)


def test_blank_images_count_as_collapsed_not_diverse():
    assert mean_pairwise_cosine(torch.zeros(4, 1, 3, 3)) == pytest.approx(1.0)
    assert mean_pairwise_cosine([[0.0, 0.0], [1.0, 0.0]]) == pytest.approx(0.0)


def test_center_is_subtracted_first():
    # [2, 1] - [1, 1] = e1 and [1, 2] - [1, 1] = e2: orthogonal after centring, 0.8 before.
    x = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    assert mean_pairwise_cosine(x) == pytest.approx(0.8)
    assert mean_pairwise_cosine(x, center=torch.tensor([1.0, 1.0])) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (torch.ones(1, 3), {}, "at least 2 samples"),
        (torch.tensor([[1.0, float("nan")], [1.0, 0.0]]), {}, "NaN"),
        (torch.ones(3, 2), {"center": torch.ones(3)}, "must have 2 values"),
    ],
)
def test_invalid_inputs_raise(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mean_pairwise_cosine(x, **kwargs)
