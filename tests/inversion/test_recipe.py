"""The Fashion-MNIST recipe's parts: augmentations, EMA of the generator, presets and their CLI flags."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netinvert.exceptions import UnknownNameError
from netinvert.inversion import PRESETS, Inverter, LossContext, as_loss, list_augmentations, make_augmentation, preset
from netinvert.models import build_model


def _tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", input_shape=(1, 8, 8), n_classes=3, channels=[4, 8], hidden=8).eval()


def test_augmentations_shift_and_flip_the_whole_batch() -> None:
    assert {"none", "shift", "shift-flip"} <= set(list_augmentations())
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    assert torch.equal(make_augmentation("none")(x), x)
    seen_flip, seen_shift = False, set()
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        y = make_augmentation("shift-flip", shift=2)(x, g)
        # each output is the batch rolled by one (dy, dx) in [-2, 2]^2, perhaps mirrored left-right
        matches = [(dy, dx, f) for dy in range(-2, 3) for dx in range(-2, 3) for f in (False, True)
                   if torch.equal(y, (lambda r: r.flip(3) if f else r)(torch.roll(x, (dy, dx), (2, 3))))]
        assert matches
        seen_flip |= any(f for *_, f in matches)
        seen_shift |= {(dy, dx) for dy, dx, _ in matches}
    assert seen_flip and len(seen_shift) > 5
    assert torch.equal(make_augmentation("shift-flip", shift=0, flip=0.0)(x, g), x)
    with pytest.raises(ValueError, match="'shift' parameter"):
        make_augmentation("shift", shift=-1)
    with pytest.raises(ValueError, match="'flip' parameter"):
        make_augmentation("shift-flip", flip=2)
    with pytest.raises(UnknownNameError):
        make_augmentation("rotate")


def test_affine_augmentation_transforms_each_image_and_keeps_gradients() -> None:
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(0), requires_grad=True)
    still = make_augmentation("affine", scale=0.0, degrees=0.0, shift=0, flip=0.0)
    assert torch.allclose(still(x), x, atol=1e-5)  # the identity transform resamples exactly onto the grid
    mirror = make_augmentation("affine", scale=0.0, degrees=0.0, shift=0, flip=1.0)
    assert torch.allclose(mirror(x), x.flip(3), atol=1e-5)
    shift_only = make_augmentation("affine", scale=0.0, degrees=0.0, shift=1, flip=0.0)
    y = shift_only(x, torch.Generator().manual_seed(3))
    # a translation of up to one pixel per image: each output is a (sub-pixel) shift, never the whole batch alike
    assert not torch.allclose(y, x, atol=1e-3)
    diffs = {round(float((y[i] - x[i]).detach().abs().mean()), 4) for i in range(len(x))}
    assert len(diffs) > 1
    a = make_augmentation("affine")
    same = [a(x, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(same[0], same[1])  # reproducible from the generator
    same[0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'degrees' parameter"):
        make_augmentation("affine", degrees=-1)
    with pytest.raises(ValueError, match="'scale' parameter"):
        make_augmentation("affine", scale=0.9)


def test_the_classifier_scores_augmented_images_and_priors_see_the_originals() -> None:
    clf = _tiny_classifier()
    seen = []

    def probe(ctx: LossContext) -> torch.Tensor:
        logits_of_x = ctx.classifier(ctx.x)
        seen.append(torch.allclose(logits_of_x, ctx.logits))
        return ctx.x.sum() * 0.0

    Inverter(clf, losses=["ce:1", as_loss(probe)], batch_size=6, width=4, augment="none").fit(steps=2, progress=False)
    assert seen == [True, True]
    seen.clear()
    Inverter(clf, losses=["ce:1", as_loss(probe)], batch_size=6, width=4, augment="shift-flip").fit(steps=6, progress=False)
    assert not all(seen)  # some steps scored a shifted / mirrored copy


def test_ema_samples_from_the_averaged_weights_and_survives_save_load(tmp_path) -> None:
    clf = _tiny_classifier()
    plain = Inverter(clf, losses=["ce:1", "mode_seeking:0.05"], batch_size=6, width=4, seed=1).fit(steps=5, progress=False)
    averaged = Inverter(clf, losses=["ce:1", "mode_seeking:0.05"], batch_size=6, width=4, seed=1, ema=0.5,
                        augment="shift").fit(steps=5, progress=False)
    assert "mode_seeking" in averaged.history_
    # same seed and steps, so the raw weights agree; sampling and saving use the EMA copy instead
    w_plain = next(plain.generator_.parameters())
    w_avg = next(averaged.generator_.parameters())
    assert not torch.allclose(w_plain, w_avg)
    averaged.save(tmp_path / "g")
    back = Inverter.load(tmp_path / "g", clf)
    assert back.ema == 0.5 and back.augmentation_.name == "shift" and back.augmentation_.params == {"shift": 2}
    assert torch.equal(back.sample(1, 4, seed=3), averaged.sample(1, 4, seed=3))
    with pytest.raises(ValueError, match="'ema' parameter of Inverter must be a float in \\(0, 1\\)"):
        Inverter(clf, ema=1.0).fit(steps=1, progress=False)


def test_presets_are_copies_that_build_an_inverter() -> None:
    assert set(PRESETS) >= {"default", "fashion", "fashion-robust"}
    fashion = preset("fashion")
    fashion["lr"] = 9.0
    assert PRESETS["fashion"]["lr"] != 9.0
    inv = Inverter(_tiny_classifier(), **{**preset("fashion"), "batch_size": 6, "width": 4}).fit(steps=2, progress=False)
    assert {"ce", "bn", "tv", "image_stats", "mode_seeking", "cosine"} <= set(inv.history_)
    robust = Inverter(_tiny_classifier(), **{**preset("fashion-robust"), "batch_size": 6, "width": 4}).fit(steps=2, progress=False)
    assert robust.objective_.weights["cosine"] < inv.objective_.weights["cosine"]
    with pytest.raises(ValueError, match="Unknown inverter preset 'mnist'"):
        preset("mnist")
