"""OOD detectors: every formula against a hand computation, the registry contract, and a real digits CNN."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from torch import nn

from netinvert.apps.ood import (
    Detector,
    Energy,
    GarbageProbability,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    OODMetrics,
    Uncertainty,
    list_detectors,
    load_ood_set,
    make_detector,
)
from netinvert.exceptions import NotFittedError, UnknownNameError, UnsupportedLayerError
from netinvert.models import HookedClassifier

LOGIT_DETECTORS = ("msp", "max-logit", "energy", "garbage", "ue")


def tiny_model(n_classes: int = 3) -> HookedClassifier:
    """A seeded (1, 4, 4) -> n_classes MLP with 8 penultimate features."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, n_classes))
    return HookedClassifier(net, input_shape=(1, 4, 4), n_classes=n_classes)


def tiny_data(n: int = 24, n_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % n_classes


# --------------------------------------------------------------------------- formulas by hand


def test_msp_and_max_logit_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=torch.float64)
    assert MaxSoftmax.score(logits).tolist() == pytest.approx([-0.5, -0.75])
    assert MaxLogit.score(torch.tensor([[1.0, 3.0, 2.0], [-1.0, -2.0, -5.0]])).tolist() == [-3.0, 1.0]


def test_energy_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    assert Energy.score(logits).tolist() == pytest.approx([-math.log(2.0), -math.log(math.e + math.e**2)])
    t = 2.0
    expected = -t * math.log(math.exp(0.5) + math.exp(1.0))
    assert Energy.score(logits[1:], t=t).item() == pytest.approx(expected)
    assert Energy(None, t=t).predict_logits(logits[1:]).item() == pytest.approx(expected)
    # As T -> 0 the energy tends to -max logit.
    assert Energy.score(logits[1:], t=1e-3).item() == pytest.approx(-2.0, abs=1e-6)


def test_garbage_probability_by_hand() -> None:
    logits = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=torch.float64).log()
    assert GarbageProbability.score(logits).tolist() == pytest.approx([0.5, 0.1])
    assert GarbageProbability.score(logits, garbage_index=0).tolist() == pytest.approx([0.2, 0.6])
    assert GarbageProbability(None, garbage_index=1).predict_logits(logits).tolist() == pytest.approx([0.3, 0.3])


def test_ue_uniform_is_one_one_hot_is_zero_and_a_hand_case() -> None:
    uniform = torch.zeros(2, 11, dtype=torch.float64)
    assert Uncertainty.score(uniform).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    one_hot = torch.tensor([[0.0, -math.inf, -math.inf], [-math.inf, -math.inf, 0.0]], dtype=torch.float64)
    assert Uncertainty.score(one_hot).tolist() == [0.0, 0.0]
    # K = 3, p = (1/2, 1/4, 1/4): sum (p - 1/3)^2 = 1/36 + 2/144 = 1/24; denominator (K-1)/K = 2/3.
    p = torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64)
    assert Uncertainty.score(p.log()).item() == pytest.approx(1.0 - (1 / 24) / (2 / 3))
    assert Uncertainty.score(p.log()).item() == pytest.approx(15 / 16)


def test_ue_matches_the_formula_on_random_logits() -> None:
    logits = torch.randn(50, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = torch.softmax(logits, 1).numpy()
    k = p.argmax(1)
    delta = np.eye(4)[k]
    expected = 1 - ((p - 0.25) ** 2).sum(1) / ((delta - 0.25) ** 2).sum(1)
    np.testing.assert_allclose(Uncertainty.score(logits).numpy(), expected, rtol=1e-12)
    assert ((expected >= 0) & (expected <= 1)).all()


def test_mahalanobis_equals_scipy_on_gaussian_blobs() -> None:
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.6], [0.6, 0.5]])
    centres = np.array([[0.0, 0.0], [4.0, 1.0], [-2.0, 3.0]])
    z = np.concatenate([rng.multivariate_normal(c, cov, size=40) for c in centres])
    y = np.repeat(np.arange(3), 40)
    det = Mahalanobis(None).fit_features(torch.from_numpy(z), torch.from_numpy(y))

    # The tied covariance by hand: pooled within-class scatter over N, plus the ridge eps * I.
    means = np.stack([z[y == c].mean(0) for c in range(3)])
    centred = z - means[y]
    sigma = centred.T @ centred / len(z) + 1e-6 * np.eye(2)
    vi = np.linalg.inv(sigma)
    np.testing.assert_allclose(det.means_.numpy(), means, rtol=1e-12)
    np.testing.assert_allclose(det.covariance_.numpy(), sigma, rtol=1e-12)

    queries = rng.normal(size=(25, 2)) * 4
    expected = [min(scipy_mahalanobis(q, m, vi) ** 2 for m in means) for q in queries]
    got = det.predict_features(torch.from_numpy(queries))
    assert got.dtype == torch.float32 and got.shape == (25,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    full = Mahalanobis.distances(torch.from_numpy(queries), det.means_, det.precision_).numpy()
    np.testing.assert_allclose(full[:, 1], [scipy_mahalanobis(q, means[1], vi) ** 2 for q in queries], rtol=1e-10)


def test_mahalanobis_uses_only_the_classes_it_saw() -> None:
    # An (n+1)-class garbage model is fitted on in-distribution labels only: no garbage mean.
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [4.0, 0.0], [5.0, 1.0]])
    det = Mahalanobis(None).fit_features(z, torch.tensor([0, 0, 2, 2]))
    assert det.classes_.tolist() == [0, 2] and det.means_.shape == (2, 2)


# --------------------------------------------------------------------------- registry contract


def test_registry_names_and_miss() -> None:
    assert list_detectors() == ["energy", "garbage", "mahalanobis", "max-logit", "msp", "ue"]
    with pytest.raises(UnknownNameError, match=r"Unknown OOD detector 'odin'. Valid names: energy, garbage"):
        make_detector("odin", None)


@pytest.mark.parametrize("name", list_detectors())
def test_detector_contract(name: str) -> None:
    model = tiny_model()
    det = make_detector(name, model)
    assert isinstance(det, Detector) and det.name == name and det.model is model
    params = det.get_params()
    assert params["name"] == name
    assert make_detector(model=model, **params).get_params() == params
    x, y = tiny_data()
    if det.requires_fit:
        with pytest.raises(NotFittedError, match="not fitted yet"):
            det.predict(x)
    assert det.fit((x, y)) is det
    model.train()
    scores = det.predict(x)
    assert model.training, "predict must restore the model's mode"
    assert scores.shape == (len(x),) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    torch.testing.assert_close(det(x), scores)
    torch.testing.assert_close(make_detector(name, model, batch_size=5).fit((x, y)).predict(x), scores)
    bare = make_detector(name, None)
    if bare.requires_fit:  # only Mahalanobis: it can be fitted on features without a model
        bare.fit_features(torch.randn(4, 8), torch.arange(4) % 2)
    with pytest.raises(ValueError, match="without a model"):
        bare.predict(x)


@pytest.mark.parametrize("name", LOGIT_DETECTORS)
def test_predict_is_score_of_the_logits(name: str) -> None:
    model = tiny_model()
    det = make_detector(name, model)
    x, _ = tiny_data()
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(det.predict(x), type(det).score(logits, **{k: v for k, v in det.get_params().items()
                                                                          if k not in ("name", "batch_size")}))
    torch.testing.assert_close(det.predict(x), det.predict_logits(logits))


def test_mahalanobis_fit_on_images_equals_fit_on_features() -> None:
    model = tiny_model()
    x, y = tiny_data()
    with torch.no_grad():
        z = model.features(x)
    by_images = Mahalanobis(model, batch_size=7).fit((x, y))
    by_features = Mahalanobis(None).fit_features(z, y)
    torch.testing.assert_close(by_images.means_, by_features.means_)
    torch.testing.assert_close(by_images.predict(x), by_features.predict_features(z))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5)
    torch.testing.assert_close(Mahalanobis(model).fit(loader).precision_, by_images.precision_)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"The 't' parameter of Energy must be a float in \(0, inf\). Got 0"):
        Energy.score(torch.zeros(2, 3), t=0)
    with pytest.raises(ValueError, match=r"MaxSoftmax.score expects logits of shape \(N, K\) with K >= 2. Got \(3,\)"):
        MaxSoftmax.score(torch.zeros(3))
    with pytest.raises(ValueError, match=r"'garbage_index' parameter of GarbageProbability must be an int in \[-3, 3\)"):
        GarbageProbability.score(torch.zeros(2, 3), garbage_index=3)
    with pytest.raises(TypeError, match="Mahalanobis has no score"):
        Mahalanobis.score(torch.zeros(2, 3))
    with pytest.raises(UnsupportedLayerError, match="HookedClassifier"):
        Mahalanobis(nn.Sequential(nn.Flatten(), nn.Linear(16, 3))).fit(tiny_data())
    det = Mahalanobis(None).fit_features(torch.randn(6, 8), torch.arange(6) % 2)
    with pytest.raises(ValueError, match="fitted on 8-dimensional features. Got \\(2, 3\\)"):
        det.predict_features(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        Mahalanobis(None).fit_features(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"'batch_size' parameter of MaxSoftmax must be an int in \[1, inf\)"):
        MaxSoftmax(tiny_model(), batch_size=0).predict(tiny_data()[0])
    with pytest.raises(ValueError, match=r"expects a non-empty batch of images"):
        MaxSoftmax(tiny_model()).predict(torch.zeros(0, 1, 4, 4))


# --------------------------------------------------------------------------- a real classifier


def test_digits_cnn_tells_digits_from_noise(digits_cnn, digits) -> None:
    model = copy.deepcopy(digits_cnn)
    noise = load_ood_set("uniform", digits.input_shape, n=200, seed=0)
    x_in = digits.x_test[:200]
    for name in ("msp", "energy", "mahalanobis"):
        det = make_detector(name, model).fit(digits.subset(n_train=500))
        m = OODMetrics().update(det.predict(x_in), False).update(det.predict(noise), True).compute()
        assert m["AUROC"] > 0.9, (name, m)
