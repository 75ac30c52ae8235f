"""The step-speed changes of issue 15: same-math rewrites agree with what they replace, and the opt-in
settings (``top_width``, ``pairs="batch"``) do what they say, save, load and resume exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netinvert._checkpoint import CHECKPOINT_NAME
from netinvert.inversion import ConvGenerator, Inverter, LossTerm, Objective, capture_bn_stats, make_loss
from netinvert.inversion import _generators
from netinvert.inversion._generators import MaskDropout, upsample_conv
from netinvert.models import build_model


@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (3, 4, 6, 9), (1, 2, 1, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_upsample_conv_is_conv_of_the_upsampled_map_values_and_gradients(shape, bias) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    w = torch.randn(5, shape[1], 3, 3, requires_grad=True)
    b = torch.randn(5, requires_grad=True) if bias else None
    got = upsample_conv(x, w, b)
    want = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(want)
    inputs = [x, w] + ([b] if bias else [])
    grads_got = torch.autograd.grad(got, inputs, g)
    grads_want = torch.autograd.grad(want, inputs, g)
    for a, e in zip(grads_got, grads_want):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape,matrix", [((1, 28, 28), 0), ((3, 18, 22), 10)])
def test_conv_generator_fused_path_matches_the_plain_one(monkeypatch, shape, matrix) -> None:
    torch.manual_seed(0)
    gen = ConvGenerator(input_shape=shape, latent_dim=8, code_dim=10, matrix_size=matrix, width=8).eval()
    z, code = torch.randn(4, 8), torch.rand(4, 10)
    m = torch.rand(4, 1, 10, 10) if matrix else None
    fused = gen(z, code, m)
    monkeypatch.setattr(_generators, "_FUSE_MIN_AREA", 10**9)  # every block takes upsample + conv
    torch.testing.assert_close(fused, gen(z, code, m), atol=1e-5, rtol=1e-5)


def test_mask_dropout_keeps_dropout_semantics() -> None:
    layer = MaskDropout(0.25)
    assert isinstance(layer, nn.Dropout)  # so Generator.sampling_mode keeps it active
    x = torch.ones(400, 500)
    torch.manual_seed(0)
    y = layer.train()(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    assert abs(y.mean().item() - 1.0) < 0.02
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(MaskDropout(0.0).train()(x), x)
    torch.manual_seed(1)
    a = layer.train()(x)
    torch.manual_seed(1)
    assert torch.equal(a, layer(x))  # drawn from the global torch random state: seeded runs repeat


def test_bn_statistics_variance_is_the_population_variance() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 8), nn.BatchNorm1d(8)).eval()
    x = torch.rand(16, 1, 8, 8) * 3 + 1
    inputs = []
    hooks = [m.register_forward_pre_hook(lambda _m, i: inputs.append(i[0])) for m in (model[1], model[4])]
    with capture_bn_stats(model) as stats:
        model(x)
    for h in hooks:
        h.remove()
    assert len(stats) == 2
    for (mean, var, _, _), inp in zip(stats, inputs):
        dims = [0, *range(2, inp.dim())]
        torch.testing.assert_close(mean, inp.mean(dims))
        torch.testing.assert_close(var, inp.var(dims, unbiased=False), atol=1e-5, rtol=1e-4)
        assert (var >= 0).all()


@pytest.fixture(scope="module")
def tiny_clf() -> nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", input_shape=(1, 12, 12), n_classes=3, channels=[4, 8], hidden=16).eval()


def test_top_width_narrows_the_last_block_and_round_trips(tiny_clf, tmp_path) -> None:
    inv = Inverter(tiny_clf, batch_size=6, width=8, top_width=3).fit(steps=2, progress=False)
    gen = inv.generator_
    assert gen.up[1][1].out_channels == 3 and gen.out.in_channels == 3
    assert gen.get_params()["top_width"] == 3
    assert "top_width" not in ConvGenerator(input_shape=(1, 12, 12), latent_dim=4).get_params()  # old cards unchanged
    inv.save(tmp_path / "run")
    again = Inverter.load(tmp_path / "run", tiny_clf)
    assert again.top_width == 3 and again.generator_.up[1][1].out_channels == 3
    torch.testing.assert_close(again.sample(1, 4, seed=0), inv.sample(1, 4, seed=0))


def test_top_width_is_refused_off_the_conv_generator(tiny_clf) -> None:
    with pytest.raises(ValueError, match="conv generator only"):
        Inverter(tiny_clf, generator="mlp", top_width=4).fit(steps=1, progress=False)
    with pytest.raises(ValueError, match="'top_width' parameter of Inverter must be an int"):
        Inverter(tiny_clf, top_width=0).fit(steps=1, progress=False)


def test_pairs_from_the_batch_share_their_conditioning(tiny_clf) -> None:
    seen = []

    def record(ctx):
        seen.append((ctx.pair, ctx.cond, ctx.x))
        return ctx.x.sum() * 0.0

    custom = LossTerm("record", record, needs_pair=True)
    Inverter(tiny_clf, batch_size=7, width=4, losses=make_loss("ce") + custom, pairs="batch").fit(steps=2, progress=False)
    (xa, xb, za, zb), cond, x = seen[-1]
    assert len(x) == 7 and len(xa) == len(xb) == 3
    assert torch.equal(xa, x[:3]) and torch.equal(xb, x[-3:])
    assert torch.equal(cond.code[:3], cond.code[4:7]) and torch.equal(cond.labels[:3], cond.labels[4:7])
    assert not torch.equal(za, zb)
    # ceil(7 / 2) = 4 conditionings, balanced over the classes as a batch of 4 is, each given twice (the last once)
    assert sorted(torch.bincount(cond.labels[:4], minlength=3).tolist()) == [1, 1, 2]


def test_pairs_setting_is_checked(tiny_clf) -> None:
    with pytest.raises(ValueError, match="'pairs' parameter of Inverter must be one of"):
        Inverter(tiny_clf, pairs="both").fit(steps=1, progress=False)


def test_pairs_from_the_batch_resume_exactly(tiny_clf, tmp_path, monkeypatch) -> None:
    settings = {"batch_size": 8, "width": 4, "top_width": 2, "ema": 0.9, "seed": 2, "pairs": "batch",
                "losses": ["ce:1", "mode_seeking:0.05"]}
    ref = Inverter(tiny_clf, **settings).fit(steps=5, progress=False)
    path = tmp_path / CHECKPOINT_NAME
    evaluate, calls = Objective.evaluate, []

    def interrupting(self, ctx):  # Ctrl-C inside the fourth step: the checkpoint holds the first three
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return evaluate(self, ctx)

    monkeypatch.setattr(Objective, "evaluate", interrupting)
    with pytest.raises(KeyboardInterrupt):
        Inverter(tiny_clf, **settings).fit(steps=5, progress=False, checkpoint=path, checkpoint_seconds=None)
    monkeypatch.setattr(Objective, "evaluate", evaluate)
    again = Inverter(tiny_clf, **settings).fit(steps=5, progress=False, resume_from=path)
    want, got = ref.generator_.state_dict(), again.generator_.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert again.history_["loss"] == ref.history_["loss"]
    with pytest.raises(ValueError, match="another params"):
        Inverter(tiny_clf, **{**settings, "pairs": "extra"}).fit(steps=5, progress=False, resume_from=path)
