import shutil

import pytest
import torch

from netinvert.metrics import Verifiers, train_verifiers
from netinvert.models import Classifier, evaluate_classifier


def test_verifiers_are_frozen_accurate_and_robust_one_is_robust(verifiers, digits):
    assert isinstance(verifiers, Verifiers)
    for role in ("plain", "robust"):
        model = getattr(verifiers, role)
        assert isinstance(model, Classifier)
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
        info = verifiers.info[role]
        assert info["clean_accuracy"] == pytest.approx(evaluate_classifier(model, digits.x_test, digits.y_test))
        assert info["clean_accuracy"] > 0.9
    # The point of the robust verifier: a PGD attack at its training radius moves it much less.
    assert verifiers.info["robust"]["pgd_accuracy"] > verifiers.info["plain"]["pgd_accuracy"] + 0.05
    assert verifiers.info["robust"]["pgd_accuracy"] > 0.5
    assert verifiers.info["robust"]["pgd"]["eps"] > 0


def test_verifiers_are_not_the_default_target(verifiers):
    # The default target is a `cnn` with channels (32, 64), trained with seed 0.
    assert verifiers.info["plain"]["model"] == "mlp"
    robust = verifiers.info["robust"]
    assert robust["model"] == "cnn" and robust["params"]["channels"] != [32, 64]
    assert robust["train"]["adv_eps"] > 0 and robust["train"]["seed"] != 0
    assert verifiers.info["plain"]["train"]["seed"] != 0


def test_cache_is_reused_when_matching(verifiers, digits, verifier_cache):
    again = train_verifiers(digits, seed=1, cache_dir=verifier_cache)
    assert again.info["plain"]["cached"] and again.info["robust"]["cached"]
    assert (verifier_cache / "plain" / "card.json").is_file()
    x = digits.x_test[:64]
    with torch.no_grad():
        for role in ("plain", "robust"):
            assert torch.equal(getattr(again, role)(x), getattr(verifiers, role)(x))
        assert not again.robust.training


def test_cache_is_ignored_for_another_seed(digits, verifier_cache, tmp_path):
    shutil.copytree(verifier_cache, tmp_path, dirs_exist_ok=True)
    other = train_verifiers(digits, seed=2, cache_dir=tmp_path, epochs=1)
    assert not other.info["plain"]["cached"] and not other.info["robust"]["cached"]
    assert other.info["seed"] == 2
    # ... and the retrained verifiers replaced the cached ones.
    assert train_verifiers(digits, seed=2, cache_dir=tmp_path, epochs=1).info["robust"]["cached"]


def test_invalid_epochs_raise(digits):
    with pytest.raises(ValueError, match="'epochs' parameter"):
        train_verifiers(digits, epochs=0)
