"""The learned image prior: training, persistence, and inversion through a frozen decoder."""

from __future__ import annotations

import copy

import pytest
import torch

from netinvert.exceptions import RunFormatError
from netinvert.inversion import ImagePrior, Inverter, load_image_prior, save_image_prior, train_image_prior
from netinvert.models import build_model


@pytest.fixture(scope="module")
def digits_prior(digits):
    torch.manual_seed(0)
    return train_image_prior(digits.x_train, code_dim=8, hidden=(64, 128), epochs=60, test_images=digits.x_test)


def test_the_prior_learns_the_images_and_comes_back_frozen(digits, digits_prior):
    """Reconstructions from the mean code beat the mean training image by far; decoded codes are images."""
    prior, info = digits_prior
    mean_image_mse = float(((digits.x_test - digits.x_train.mean(0)) ** 2).mean())
    assert info["test_mse"] < 0.7 * mean_image_mse
    assert info["epochs"] == 60 and info["n_images"] == len(digits.x_train)
    assert not any(p.requires_grad for p in prior.parameters()) and not prior.training
    x = prior(torch.randn(5, 8))
    assert x.shape == (5, 1, 8, 8) and x.min() >= 0 and x.max() <= 1


def test_training_rejects_bad_images_and_keeps_the_callers_random_state():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        train_image_prior(torch.rand(10, 64))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        train_image_prior(torch.rand(10, 1, 8, 8) * 2)
    nan = torch.rand(10, 1, 8, 8)
    nan[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        train_image_prior(nan)
    with pytest.raises(ValueError, match="test_images"):
        train_image_prior(torch.rand(10, 1, 8, 8), test_images=torch.rand(4, 64))
    images = torch.rand(10, 1, 8, 8)
    state = torch.get_rng_state()
    train_image_prior(images, code_dim=2, hidden=(4,), epochs=1, batch_size=5, seed=9)
    assert torch.equal(torch.get_rng_state(), state)  # seeded without moving the caller's generator


def test_save_load_round_trip_and_wrong_folders(tmp_path, digits_prior):
    prior = digits_prior[0]
    save_image_prior(tmp_path / "p", prior, {"dataset": "digits"})
    again = load_image_prior(tmp_path / "p")
    code = torch.randn(3, 8)
    assert torch.equal(again(code), prior(code)) and again.get_params() == prior.get_params()
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "card.json").write_text('{"kind": "bnn", "prior_params": {}}')
    with pytest.raises(RunFormatError, match="netinvert prior"):
        load_image_prior(tmp_path / "q")


def test_inverting_through_the_prior_trains_only_the_code_network(tmp_path, digits_cnn, digits_prior):
    """The classifier and the decoder stay unchanged; samples are decoder outputs; a run folder reloads."""
    prior = digits_prior[0]
    prior_before = copy.deepcopy(prior.state_dict())
    clf_before = copy.deepcopy(digits_cnn.state_dict())
    inv = Inverter(digits_cnn, image_prior=prior, batch_size=20, width=8, latent_dim=8).fit(steps=4, progress=False)
    G = inv.generator_
    assert type(G).__name__ == "PriorGenerator"
    assert all(torch.equal(prior_before[k], v) for k, v in G.prior.state_dict().items())
    assert all(torch.equal(clf_before[k], v) for k, v in digits_cnn.state_dict().items())
    assert all(p.grad is None for p in G.prior.parameters()) and any(p.grad is not None for p in G.body.parameters())
    assert G.prior is not prior  # a copy: the caller's module is never moved or changed
    x = inv.sample(3, 6, seed=0)
    assert x.shape == (6, 1, 8, 8)
    inv.save(tmp_path / "inv")
    loaded = Inverter.load(tmp_path / "inv", digits_cnn)  # no prior folder needed: its weights are in the run
    assert torch.equal(loaded.sample(3, 6, seed=0), x)
    loaded.fit(steps=2, progress=False)  # a loaded run can be fitted again
    assert all(torch.equal(prior_before[k], v) for k, v in loaded.generator_.prior.state_dict().items())


def test_the_ema_copy_keeps_the_prior_bit_for_bit(digits_cnn, digits_prior):
    prior = digits_prior[0]
    inv = Inverter(digits_cnn, image_prior=prior, ema=0.9, batch_size=20, width=8, latent_dim=8).fit(steps=5, progress=False)
    assert all(torch.equal(prior.state_dict()[k], v) for k, v in inv.generator_.prior.state_dict().items())


def test_codes_stay_inside_the_radius(digits_prior):
    """However large the body's output, the code norm stays under radius * sqrt(code_dim)."""
    from netinvert.inversion import PriorGenerator

    G = PriorGenerator(prior=digits_prior[0], input_shape=(1, 8, 8), latent_dim=4, code_dim=10, width=2, radius=2.0)
    z, code = torch.randn(7, 4), torch.softmax(torch.randn(7, 10), 1)
    with torch.no_grad():
        G.body[-1].bias.fill_(100.0)
    norms = G.eval().codes(z, code).norm(dim=1)
    assert (norms <= 2.0 * 8**0.5 + 1e-4).all() and (norms > 0.99 * 2.0 * 8**0.5).all()


def test_prior_misuse_fails_clearly(digits_cnn, digits_prior):
    prior = digits_prior[0]
    with pytest.raises(ValueError, match="conditioning matrix"):
        Inverter(digits_cnn, image_prior=prior, conditioning="matrix", batch_size=8).fit(steps=1, progress=False)
    with pytest.raises(ValueError, match="'prior' generator only"):
        Inverter(digits_cnn, image_prior=prior, generator="conv", batch_size=8).fit(steps=1, progress=False)
    other = build_model("cnn", input_shape=(1, 12, 12), n_classes=10)
    with pytest.raises(ValueError, match="shape"):
        Inverter(other, image_prior=prior, batch_size=8).fit(steps=1, progress=False)
    with pytest.raises(ValueError, match="--image-prior"):
        Inverter(digits_cnn, generator="prior", batch_size=8).fit(steps=1, progress=False)
    with pytest.raises(ValueError, match="returns \\(prior, info\\)"):
        Inverter(digits_cnn, image_prior=digits_prior, batch_size=8).fit(steps=1, progress=False)
    assert isinstance(prior, ImagePrior)
