"""The Inverter: training contract, sampling, persistence and failure paths."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from netinvert.exceptions import NotFittedError, RunFormatError, TrainingDivergedError
from netinvert.inversion import Inverter, LossContext, as_loss, list_conditionings, list_generators, make_conditioning
from netinvert.models import TrainConfig, build_model, evaluate_classifier, train_classifier


def _tiny_classifier(n_classes: int = 3, shape=(1, 8, 8)) -> nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", input_shape=shape, n_classes=n_classes, channels=[4, 8], hidden=8).eval()


@pytest.mark.parametrize("generator", [g for g in list_generators() if g != "prior"])  # prior: tests/inversion/test_prior.py
@pytest.mark.parametrize("conditioning", list_conditionings())
def test_each_mode_trains_and_samples_with_the_classifier_frozen(conditioning: str, generator: str) -> None:
    clf = _tiny_classifier()
    clf.train()  # the inverter must put it in eval mode for the fit and give it back as it was
    before = copy.deepcopy(clf.state_dict())
    seen = []

    def frozen_probe(ctx: LossContext) -> torch.Tensor:
        seen.append((ctx.classifier.training, any(p.requires_grad for p in ctx.classifier.parameters())))
        return ctx.x.sum() * 0.0

    inv = Inverter(clf, conditioning=conditioning, generator=generator, losses=["ce:1", "cosine:1", "bn:0.1", as_loss(frozen_probe)],
                   batch_size=12, width=4, latent_dim=8)
    assert inv.fit(steps=3, progress=False) is inv
    assert seen == [(False, False)] * 3
    assert clf.training and all(p.requires_grad for p in clf.parameters())  # restored
    assert all(p.grad is None for p in clf.parameters())  # no gradient reached the classifier
    assert all(torch.equal(before[k], v) for k, v in clf.state_dict().items())  # BN running stats included
    assert any(p.grad is not None for p in inv.generator_.parameters())
    x = inv.sample(2, 5, seed=0)
    assert x.shape == (5, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert set(inv.history_) >= {"step", "seconds", "lr", "loss", "validity", "ce", "cosine", "bn", "frozen_probe"}
    assert len(inv.history_["ce"]) == 3


def test_constructor_stores_parameters_and_fit_validates_them() -> None:
    clf = _tiny_classifier()
    inv = Inverter(clf, dropout=0.7, latent_dim=5, lr=0.01, batch_size=7, seed=3)
    assert inv.get_params()["dropout"] == 0.7 and inv.latent_dim == 5 and inv.seed == 3
    assert not hasattr(inv, "generator_")  # the constructor does no work
    for kwargs, match in ((dict(dropout=1.0), "'dropout' parameter of Inverter must be a float in \\[0, 1\\)"),
                          (dict(batch_size=1), "'batch_size' parameter of Inverter must be an int in \\[2, inf\\)"),
                          (dict(lr=-1), "'lr' parameter"), (dict(lr_schedule="step"), "'lr_schedule'"),
                          (dict(conditioning="hidden"), "Unknown conditioning 'hidden'"),
                          (dict(generator="gan"), "Unknown generator 'gan'"),
                          (dict(conditioning=make_conditioning("vector", 5)), "built for 5 classes")):
        with pytest.raises((ValueError, KeyError), match=match):
            Inverter(clf, **kwargs).fit(steps=1, progress=False)
    with pytest.raises(ValueError, match="'steps' parameter of Inverter.fit must be an int in \\[1, inf\\)"):
        Inverter(clf).fit(steps=0, progress=False)
    mlp = build_model("mlp", input_shape=(1, 8, 8), n_classes=3)
    with pytest.raises(ValueError, match="needs a classifier with BatchNorm"):
        Inverter(mlp, losses=["ce:1", "bn:1"]).fit(steps=1, progress=False)
    Inverter(mlp, batch_size=6, width=4).fit(steps=1, progress=False)  # default losses drop 'bn' by themselves


def test_sampling_errors_and_seeds() -> None:
    clf = _tiny_classifier()
    inv = Inverter(clf, batch_size=6, width=4)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        inv.sample(0, 2)
    inv.fit(steps=2, progress=False)
    for bad in (3, -1, 1.5, "1", True):
        with pytest.raises(ValueError, match="'label' parameter of sample must be an int in \\[0, 2\\]"):
            inv.sample(bad, 2)
    with pytest.raises(ValueError, match="'n' parameter"):
        inv.sample(0, 0)
    a, b, c = inv.sample(1, 7, seed=4), inv.sample(1, 7, seed=4), inv.sample(1, 7, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert inv.sample(torch.tensor(1), 2, seed=0).shape == (2, 1, 8, 8)
    # dropout stays active when sampling: the same z and conditioning give different images
    G = inv.generator_.sampling_mode()
    assert any(m.training for m in G.modules() if isinstance(m, nn.Dropout))
    assert not any(m.training for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def test_a_classifier_that_rejects_the_generated_shape_fails_clearly() -> None:
    clf = _tiny_classifier()
    clf.input_shape = (1, 6, 6)  # a declared shape its layers cannot take
    with pytest.raises(ValueError, match="declares input_shape \\(1, 6, 6\\) but fails on inputs of shape \\(N, 1, 6, 6\\)"):
        Inverter(clf, batch_size=6, width=4).fit(steps=1, progress=False)
    clf.input_shape, clf.n_classes = (1, 8, 8), 5  # logits of the wrong width
    with pytest.raises(ValueError, match="must return logits \\(N, 5\\)"):
        Inverter(clf, batch_size=6, width=4).fit(steps=1, progress=False)
    with pytest.raises(ValueError, match="must expose input_shape, n_classes and forward_with_features"):
        Inverter(nn.Linear(3, 3)).fit(steps=1, progress=False)


class _NaNAfter(nn.Module):
    """Wraps a classifier and returns NaN logits from the ``k``-th forward pass on."""

    def __init__(self, inner: nn.Module, k: int) -> None:
        super().__init__()
        self.inner, self.k, self.calls = inner, k, 0
        self.input_shape, self.n_classes = inner.input_shape, inner.n_classes

    def forward_with_features(self, x: torch.Tensor):
        self.calls += 1
        logits, feats = self.inner.forward_with_features(x)
        return (logits * float("nan") if self.calls > self.k else logits), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    clf = _NaNAfter(_tiny_classifier(), k=8)  # one probe call, then steps 0..6 are fine
    inv = Inverter(clf, losses=["ce:1"], batch_size=6, width=4, checkpoint_every=5)
    with pytest.raises(TrainingDivergedError, match="diverged at step 7: the loss term\\(s\\) ce became non-finite.*checkpoint \\(step 5\\)"):
        inv.fit(steps=20, progress=False)
    assert len(inv.history_["step"]) == 7
    x = inv.sample(0, 4, seed=0)  # the restored generator is usable and finite
    assert torch.isfinite(x).all()
    inv.save(tmp_path / "run")
    # the saved weights are the restored generator's: reloaded, it draws the same samples for the same seed
    loaded = Inverter.load(tmp_path / "run", clf)
    assert torch.equal(loaded.sample(0, 4, seed=0), x)
    assert torch.equal(loaded.sample(2, 5, seed=9), inv.sample(2, 5, seed=9))


def test_save_load_round_trip_gives_the_same_samples(tmp_path, digits_cnn) -> None:
    inv = Inverter(digits_cnn, conditioning="vector+matrix", batch_size=20, width=8, latent_dim=16).fit(steps=3, progress=False)
    inv.save(tmp_path / "inv")
    loaded = Inverter.load(tmp_path / "inv", digits_cnn)
    assert torch.equal(loaded.sample(4, 9, seed=11), inv.sample(4, 9, seed=11))
    assert loaded.conditioning_.get_params() == inv.conditioning_.get_params()
    assert loaded.objective_.spec() == inv.objective_.spec()
    assert loaded.history_["loss"] == inv.history_["loss"]
    other = build_model("cnn", input_shape=(1, 8, 8), n_classes=4)
    with pytest.raises(RunFormatError, match="10 classes"):
        Inverter.load(tmp_path / "inv", other)
    with pytest.raises(FileNotFoundError):
        Inverter.load(tmp_path / "missing", digits_cnn)
    changed = copy.deepcopy(digits_cnn)
    with torch.no_grad():
        changed.head.bias.add_(1.0)
    with pytest.warns(UserWarning, match="other weights"):
        Inverter.load(tmp_path / "inv", changed)


def test_inverting_a_digits_cnn_gives_valid_samples_an_independent_verifier_accepts(digits, digits_cnn) -> None:
    torch.manual_seed(1)
    verifier = build_model("mlp", input_shape=digits.input_shape, n_classes=10, mean=digits.mean, std=digits.std, hidden=[64])
    train_classifier(verifier, digits, TrainConfig(epochs=8, batch_size=64, lr=3e-3, seed=1, device="cpu"), progress=False)
    assert evaluate_classifier(verifier, digits.x_test, digits.y_test) > 0.9
    # default losses and conditioning; a narrower generator and a constant lr fit the test budget
    inv = Inverter(digits_cnn, width=16, lr_schedule="constant").fit(steps=300, progress=False)
    report = inv.evaluate(n_per_class=30, seed=0)
    assert report["validity"] >= 0.93, report
    x, y = inv.sample_classes(30, seed=0)
    with torch.no_grad():
        verifier_accuracy = float((verifier(x).argmax(1) == y).float().mean())
    assert verifier_accuracy >= 0.8, verifier_accuracy  # measured 0.94 (validity 0.96)
