"""The classifier zoo: shapes, features and the contract inversion relies on."""

from __future__ import annotations

import pytest
import torch

from netinvert.exceptions import UnknownNameError
from netinvert.models import MLP, Classifier, ResNetCNN, SmallCNN, build_model, list_models

CASES = [
    ("mlp", (1, 8, 8), {"hidden": [32, 16]}, MLP, 16),
    ("cnn", (1, 8, 8), {"channels": [8, 16], "hidden": 24}, SmallCNN, 24),
    ("cnn", (1, 28, 28), {"channels": [8, 16], "hidden": 32, "convs_per_block": 1}, SmallCNN, 32),
    ("resnet", (3, 32, 32), {"width": 8}, ResNetCNN, 32),  # 4 * width after three stages
]


def test_registry_lists_the_zoo():
    assert {"mlp", "cnn", "resnet"} <= set(list_models())
    with pytest.raises(UnknownNameError, match="Valid names: .*cnn"):
        build_model("vgg", input_shape=(1, 8, 8), n_classes=10)


@pytest.mark.parametrize(("name", "shape", "params", "cls", "feat_dim"), CASES)
def test_shapes_and_features(name, shape, params, cls, feat_dim):
    torch.manual_seed(0)
    model = build_model(name, input_shape=shape, n_classes=7, **params).eval()
    assert isinstance(model, cls) and isinstance(model, Classifier)
    x = torch.rand(5, *shape)
    logits = model(x)
    feats = model.features(x)
    assert logits.shape == (5, 7)
    assert feats.shape == (5, feat_dim)
    # features really are penultimate: the head maps them to the logits, in one pass too
    torch.testing.assert_close(model.head(feats), logits)
    logits2, feats2 = model.forward_with_features(x)
    torch.testing.assert_close(logits2, logits)
    torch.testing.assert_close(feats2, feats)
    # gradients reach the pixels (inversion optimises inputs)
    x.requires_grad_(True)
    model(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "shape", "params", "cls", "feat_dim"), CASES)
def test_get_params_rebuilds_the_same_architecture(name, shape, params, cls, feat_dim):
    model = build_model(name, input_shape=shape, n_classes=7, mean=[0.5] * shape[0], std=[0.25] * shape[0], **params)
    clone = build_model(name, **model.get_params())
    clone.load_state_dict(model.state_dict())  # strict: same keys and shapes
    assert clone.get_params() == model.get_params()
    x = torch.rand(3, *shape)
    torch.testing.assert_close(clone.eval()(x), model.eval()(x))


@pytest.mark.parametrize(("name", "shape", "params", "cls", "feat_dim"), CASES)
def test_wrong_input_shape_is_a_clear_error(name, shape, params, cls, feat_dim):
    model = build_model(name, input_shape=shape, n_classes=7, **params)
    bad = torch.rand(2, shape[0], shape[1] + 2, shape[2])
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, "):
        model(bad)
    with pytest.raises(ValueError, match="expects inputs of shape"):
        model.features(torch.rand(shape[0], shape[1], shape[2]))  # missing batch axis


def test_normalisation_happens_inside():
    """A [0, 1] input equal to the training mean reaches the layers as zeros."""
    model = build_model("mlp", input_shape=(1, 4, 4), n_classes=3, mean=[0.3], std=[0.2], hidden=[4]).eval()
    x = torch.full((1, 1, 4, 4), 0.3)
    assert torch.count_nonzero(model.normalize(x)) == 0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"input_shape": (8, 8)}, r"The 'input_shape' parameter of cnn must be a list of 3 ints in \[1, inf\) "
                                  r"\(C, H, W\)\. Got \(8, 8\) instead\."),
        ({"input_shape": (0, 8, 8)}, r"The 'input_shape' parameter of cnn .* Got \(0, 8, 8\) instead\."),
        ({"n_classes": 1}, r"The 'n_classes' parameter of cnn must be an int in \[2, inf\)\. Got 1 instead\."),
        ({"mean": [0.1, 0.2]}, r"The 'mean' parameter of cnn must be a list of 1 floats .*one per channel"),
        ({"std": [0.0]}, r"The 'std' parameter of cnn must be a list of 1 floats in \(0, inf\)"),
        ({"std": [float("nan")]}, r"The 'std' parameter of cnn"),
        ({"input_shape": (1, 2, 2)}, "too small"),
        ({"channels": [0, 8]}, r"The 'channels' parameter of cnn must be a list of ints in \[1, inf\)\. "
                               r"Got \[0, 8\] instead\."),
        ({"channels": [-4]}, r"The 'channels' parameter of cnn .* Got \[-4\] instead\."),
        ({"channels": "16,32"}, r"The 'channels' parameter of cnn .* Got '16,32' instead\."),
        ({"channels": [8.5]}, r"The 'channels' parameter of cnn"),
        ({"hidden": 0}, r"The 'hidden' parameter of cnn must be an int in \[1, inf\)\. Got 0 instead\."),
        ({"hidden": True}, r"The 'hidden' parameter of cnn must be an int"),
        ({"dropout": 1.0}, r"The 'dropout' parameter of cnn must be a float in \[0, 1\)\. Got 1\.0 instead\."),
        ({"convs_per_block": 0}, r"The 'convs_per_block' parameter of cnn must be an int in \[1, inf\)"),
    ],
)
def test_invalid_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        build_model("cnn", **({"input_shape": (1, 8, 8), "n_classes": 10} | params))


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("mlp", {"hidden": [16, 0]}, r"The 'hidden' parameter of mlp must be a list of ints in \[1, inf\)\. "
                                     r"Got \[16, 0\] instead\."),
        ("mlp", {"dropout": -0.1}, r"The 'dropout' parameter of mlp must be a float in \[0, 1\)"),
        ("resnet", {"width": 0}, r"The 'width' parameter of resnet must be an int in \[1, inf\)\. Got 0 instead\."),
        ("resnet", {"blocks_per_stage": -1}, r"The 'blocks_per_stage' parameter of resnet must be an int"),
    ],
)
def test_invalid_parameters_of_the_other_models(name, params, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, input_shape=(3, 32, 32), n_classes=10, **params)
