"""Training and evaluation on the real digits data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from netinvert._device import seed_everything
from netinvert.models import TrainConfig, build_model, evaluate_classifier, pgd_attack, predict, train_classifier


def test_digits_cnn_reaches_95_percent(digits, digits_cnn):
    acc = evaluate_classifier(digits_cnn, digits.x_test, digits.y_test)
    assert acc >= 0.95
    assert not digits_cnn.training


def test_history_and_eval_mode(digits):
    data = digits.subset(n_train=300, n_test=100)
    seed_everything(0)
    model = build_model("mlp", input_shape=data.input_shape, n_classes=10, hidden=[32])
    history = train_classifier(model, data, TrainConfig(epochs=2, lr=3e-3, device="cpu"), progress=False)
    assert len(history["loss"]) == len(history["test_accuracy"]) == 2
    assert history["loss"][1] < history["loss"][0]
    assert not model.training
    assert history["test_accuracy"][-1] == evaluate_classifier(model, data.x_test, data.y_test)


def test_same_seed_same_weights(digits):
    data = digits.subset(n_train=200, n_test=50)

    def run(seed):
        seed_everything(seed)
        model = build_model("cnn", input_shape=data.input_shape, n_classes=10, channels=[4, 8], hidden=16)
        train_classifier(model, data, TrainConfig(epochs=1, seed=seed, device="cpu"), progress=False)
        return model.state_dict()

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_batch_of_one_is_skipped_not_fatal(digits):
    """65 images with batch size 64 leave one image: batch norm cannot train on it alone."""
    data = digits.subset(n_train=65, n_test=20)
    model = build_model("cnn", input_shape=data.input_shape, n_classes=10, channels=[4, 8], hidden=16)
    history = train_classifier(model, data, TrainConfig(epochs=1, device="cpu"), progress=False)
    assert len(history["loss"]) == 1


def test_pgd_attack_stays_in_ball_and_hurts(digits, digits_cnn):
    x, y = digits.x_test[:64], digits.y_test[:64]
    eps = 0.1
    x_adv = pgd_attack(digits_cnn, x, y, eps, steps=5, generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(digits_cnn(x_adv), y) > F.cross_entropy(digits_cnn(x), y)
    assert (predict(digits_cnn, x_adv) == y).float().mean() < (predict(digits_cnn, x) == y).float().mean()
    assert not digits_cnn.training


def test_adversarial_training_buys_robustness(digits):
    """PGD training (--adv-eps) keeps clean accuracy and raises accuracy under attack."""

    def robust(adv_eps):
        seed_everything(0)
        model = build_model("mlp", input_shape=digits.input_shape, n_classes=10, hidden=[64], mean=digits.mean, std=digits.std)
        config = TrainConfig(epochs=5, lr=1e-2, adv_eps=adv_eps, adv_steps=3, device="cpu")
        train_classifier(model, digits, config, progress=False)
        x_adv = pgd_attack(model, digits.x_test, digits.y_test, 0.1, 10, torch.Generator().manual_seed(0))
        clean = evaluate_classifier(model, digits.x_test, digits.y_test)
        return clean, evaluate_classifier(model, x_adv, digits.y_test)

    plain_clean, plain_pgd = robust(0.0)
    adv_clean, adv_pgd = robust(0.1)
    assert plain_clean > 0.9 and adv_clean > 0.9
    assert adv_pgd > plain_pgd + 0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"epochs": 0}, "'epochs'"), ({"lr": 0}, "'lr'"), ({"adv_eps": 1.5}, "'adv_eps'"), ({"batch_size": 0}, "'batch_size'")],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_evaluate_rejects_empty_set(digits_cnn):
    with pytest.raises(ValueError, match="empty"):
        evaluate_classifier(digits_cnn, torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long))


def test_unavailable_cuda_is_an_error(digits):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    model = build_model("mlp", input_shape=(1, 8, 8), n_classes=10)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        train_classifier(model, digits, TrainConfig(epochs=1, device="cuda"), progress=False)
