"""Loss terms: formulas against hand-computed cases, composition, parsing and registry contracts."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from netinvert.exceptions import UnknownNameError
from netinvert.inversion import (
    ConditionBatch,
    LossContext,
    as_loss,
    capture_bn_stats,
    list_losses,
    make_conditioning,
    make_generator,
    make_loss,
    make_objective,
)
from netinvert.models import build_model


def _ctx(logits=None, features=None, labels=None, target=None, x=None, classifier=None, bn_stats=None) -> LossContext:
    n = next(len(t) for t in (logits, features, labels, target, x) if t is not None)
    labels = labels if labels is not None else torch.zeros(n, dtype=torch.long)
    target = target if target is not None else torch.nn.functional.one_hot(labels, 3).float()
    return LossContext(x=x if x is not None else torch.zeros(n, 1, 2, 2), logits=logits if logits is not None else torch.zeros(n, 3),
                       features=features if features is not None else torch.zeros(n, 2),
                       cond=ConditionBatch(labels, target, None, None), classifier=classifier, bn_stats=bn_stats or [])


def test_kl_matches_hand_computation() -> None:
    # P = (1/2, 1/2), Q = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3)
    logits = torch.log(torch.tensor([[0.25, 0.75]]))
    ctx = _ctx(logits=logits, target=torch.tensor([[0.5, 0.5]]), labels=torch.tensor([0]))
    assert make_loss("kl")(ctx).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-6)


def test_ce_matches_hand_computation() -> None:
    # Q = (1/4, 1/4, 1/2): -ln Q_2 = ln 2, -ln Q_0 = ln 4; the batch mean is 1.5 ln 2
    logits = torch.tensor([[0.0, 0.0, math.log(2)]] * 2)
    ctx = _ctx(logits=logits, labels=torch.tensor([2, 0]))
    assert make_loss("ce")(ctx).item() == pytest.approx(1.5 * math.log(2), abs=1e-6)


def test_cosine_matches_hand_computation_for_both_scopes() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # cosines: 0, 1/sqrt2, 1/sqrt2
    mixed = torch.tensor([0, 0, 1])
    assert make_loss("cosine", scope="batch")(_ctx(features=feats, labels=mixed)).item() == pytest.approx(2 / math.sqrt(2) / 3, abs=1e-6)
    assert make_loss("cosine", scope="class")(_ctx(features=feats, labels=mixed)).item() == pytest.approx(0.0, abs=1e-6)
    same = torch.zeros(3, dtype=torch.long)
    assert make_loss("cosine")(_ctx(features=feats, labels=same)).item() == pytest.approx(2 / math.sqrt(2) / 3, abs=1e-6)
    # no same-label pair at all: nothing to push apart
    assert make_loss("cosine")(_ctx(features=feats, labels=torch.tensor([0, 1, 2]))).item() == 0.0


def test_ortho_matches_hand_computation() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])  # Gram off-diagonals: 0, 0, and four of 1/sqrt2
    assert make_loss("ortho")(_ctx(features=feats)).item() == pytest.approx(4 * 0.5 / 9, abs=1e-6)


def test_capped_ce_stops_at_the_cap_and_matches_hand_computation() -> None:
    # Q_y = 1/2 for the first sample (below cap 0.8): ln 2 - ln(1/0.8); Q_y = 0.9 for the second: 0
    logits = torch.tensor([[0.0, 0.0, -1e9], [math.log(9.0), 0.0, -1e9]])
    ctx = _ctx(logits=logits, labels=torch.tensor([0, 0]))
    expected = (math.log(2) + math.log(0.8)) / 2
    assert make_loss("ce", cap=0.8)(ctx).item() == pytest.approx(expected, abs=1e-6)
    confident = _ctx(logits=logits[1:].clone().requires_grad_(True), labels=torch.tensor([0]))
    value = make_loss("ce", cap=0.8)(confident)
    value.backward()
    assert value.item() == 0.0 and confident.logits.grad.abs().sum() == 0  # no pull beyond the cap
    assert make_loss("ce")(confident).item() > 0
    for bad in (0.0, 1.0, 1.5, True):
        with pytest.raises(ValueError, match="cap"):
            make_loss("ce", cap=bad)


def test_centred_cosine_in_pixels_and_margin_match_hand_computation() -> None:
    # three 1x1x2 images; batch mean (1, 1); centred rows (0, -1), (-1, 1), (1, 0)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [2.0, 1.0]]).reshape(3, 1, 1, 2)
    same = torch.zeros(3, dtype=torch.long)
    ctx = _ctx(x=x, labels=same, features=torch.zeros(3, 2))
    c01, c02, c12 = -1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)
    centred = make_loss("cosine", centred=True, space="pixels")(ctx).item()
    assert centred == pytest.approx((c01 + c02 + c12) / 3, abs=1e-6)
    # uncentred pixel cosines: (1,0).(0,2) = 0, (1,0).(2,1) = 2/sqrt5, (0,2).(2,1) = 1/sqrt5
    plain = make_loss("cosine", space="pixels")(ctx).item()
    assert plain == pytest.approx((0 + 2 / math.sqrt(5) + 1 / math.sqrt(5)) / 3, abs=1e-6)
    # a margin of 0.5 keeps only the pair above it (2/sqrt5 = 0.894): (0.894 - 0.5) / 3 pairs
    margin = make_loss("cosine", space="pixels", margin=0.5)(ctx).item()
    assert margin == pytest.approx((2 / math.sqrt(5) - 0.5) / 3, abs=1e-6)
    with pytest.raises(ValueError, match="space"):
        make_loss("cosine", space="logits")
    with pytest.raises(ValueError, match="margin"):
        make_loss("cosine", margin=1.0)


def test_centred_ortho_matches_hand_computation() -> None:
    # features (1, 0), (3, 0): centred (-1, 0), (1, 0), normalised Gram [[1, -1], [-1, 1]]: mean((G - I)^2) = 2/4
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert make_loss("ortho", centred=True)(_ctx(features=feats)).item() == pytest.approx(0.5, abs=1e-6)
    assert make_loss("ortho")(_ctx(features=feats)).item() == pytest.approx(0.5, abs=1e-6)  # uncentred: all cos = 1
    # mean (5/3, 5/3); centred rows point along (-1,-1), (-1,2), (2,-1): cosines -1/sqrt10, -1/sqrt10, -4/5
    feats = torch.tensor([[1.0, 1.0], [1.0, 3.0], [3.0, 1.0]])
    assert make_loss("ortho", centred=True)(_ctx(features=feats)).item() == pytest.approx((4 * 0.1 + 2 * 0.64) / 9, abs=1e-6)
    with pytest.raises(ValueError, match="'centred' parameter of ortho must be a bool"):
        make_loss("ortho", centred="no")
    with pytest.raises(ValueError, match="'centred' parameter of cosine must be a bool"):
        as_loss("cosine:1:centred=ture")


def test_tv_range_and_l2_match_hand_computation() -> None:
    x = torch.tensor([[[[0.0, 0.5], [1.0, 1.0]]]])  # vertical diffs 1, 0.5; horizontal 0.5, 0
    assert make_loss("tv")(_ctx(x=x)).item() == pytest.approx(0.75 + 0.25)
    assert make_loss("tv", p=2)(_ctx(x=x)).item() == pytest.approx((1 + 0.25) / 2 + 0.25 / 2)
    assert make_loss("l2")(_ctx(x=x)).item() == pytest.approx((0 + 0.25 + 1 + 1) / 4)
    outside = torch.tensor([[[[-0.5, 0.5], [1.0, 2.0]]]])
    assert make_loss("range")(_ctx(x=outside)).item() == pytest.approx((0.25 + 1.0) / 4)
    assert make_loss("range")(_ctx(x=x)).item() == 0.0


def test_bn_matches_hand_computation_and_hooks_are_removed() -> None:
    model = nn.Sequential(nn.BatchNorm2d(1)).eval()  # running mean 0, running var 1
    x = torch.tensor([[[[0.0, 2.0]]], [[[0.0, 2.0]]]])  # batch mean 1, biased variance 1
    with capture_bn_stats(model) as stats:
        model(x)
    assert not model[0]._forward_pre_hooks
    assert make_loss("bn")(_ctx(x=x, bn_stats=stats)).item() == pytest.approx(1.0)
    with pytest.raises(RuntimeError, match="boom"), capture_bn_stats(model):
        raise RuntimeError("boom")
    assert not model[0]._forward_pre_hooks  # removed on error too
    with pytest.raises(ValueError, match="needs a classifier with BatchNorm"):
        make_loss("bn")(_ctx(x=x))
    # two layers: the first's gap (1) weighs 10x with first=10, the second's gap stays at weight 1
    two = nn.Sequential(nn.BatchNorm2d(1), nn.BatchNorm2d(1)).eval()
    with capture_bn_stats(two) as stats:
        two(x)
    second = make_loss("bn")(_ctx(x=x, bn_stats=stats)).item() - 1.0
    assert make_loss("bn", first=10)(_ctx(x=x, bn_stats=stats)).item() == pytest.approx(10.0 + second)
    for bad in (-1, math.inf):
        with pytest.raises(ValueError, match="'first' parameter of bn"):
            make_loss("bn", first=bad)


def test_terms_compose_and_report_each_value() -> None:
    ce, kl, l2 = make_loss("ce"), make_loss("kl"), make_loss("l2")
    obj = 2 * ce + kl - l2 / 4
    assert [(w, t.name) for w, t in obj.parts()] == [(2.0, "ce"), (1.0, "kl"), (-0.25, "l2")]
    logits = torch.tensor([[0.0, 0.0, math.log(2)]])
    ctx = _ctx(logits=logits, labels=torch.tensor([2]), x=torch.full((1, 1, 2, 2), 0.5))
    total, values = obj.evaluate(ctx)
    assert set(values) == {"ce", "kl", "l2"}
    assert total.item() == pytest.approx(2 * values["ce"].item() + values["kl"].item() - values["l2"].item() / 4)
    assert set((ce + ce).evaluate(ctx)[1]) == {"ce", "ce#2"}
    for bad in (lambda: ce + 1, lambda: ce * "2", lambda: ce * ce, lambda: ce / ce, lambda: ce * True):
        with pytest.raises(TypeError):
            bad()


def test_specs_parse_into_weighted_terms_and_round_trip() -> None:
    obj = make_objective(["ce:10", "cosine:2.5:scope=batch", "jitter:1:shift=2,noise=0.1", "l2"])
    spec = obj.spec()
    assert [(s["name"], s["weight"]) for s in spec] == [("ce", 10.0), ("cosine", 2.5), ("jitter", 1.0), ("l2", 1.0)]
    assert spec[1]["params"] == {"scope": "batch", "centred": False, "space": "features", "margin": None}
    assert spec[2]["params"] == {"shift": 2, "noise": 0.1}
    assert make_objective(spec).spec() == spec
    assert make_objective({"ce": 3}).spec()[0]["weight"] == 3.0
    assert make_objective("ce:1 kl:5").weights == {"ce": 1.0, "kl": 5.0}
    assert make_objective("cosine:1 cosine:3:space=pixels").weights == {"cosine": 1.0, "cosine#2": 3.0}

    def custom(ctx):
        return ctx.x.mean()

    term = as_loss(custom)
    assert term.name == "custom" and not term.registered
    with pytest.raises(UnknownNameError, match="Unknown loss 'cee'. Valid names: .*ce"):
        as_loss("cee:1")
    with pytest.raises(ValueError, match="name:weight"):
        as_loss("ce:ten")
    with pytest.raises(ValueError, match="'scope' parameter of cosine"):
        as_loss("cosine:1:scope=pixels")
    with pytest.raises(TypeError):
        as_loss("ce:1:temperature=2")
    with pytest.raises(ValueError, match="At least one loss"):
        make_objective([])


def _bn_classifier() -> nn.Module:
    torch.manual_seed(0)
    clf = build_model("cnn", input_shape=(1, 8, 8), n_classes=3, channels=[4, 8], hidden=8)
    with torch.no_grad():  # running statistics a random batch will not match
        for m in clf.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return clf.eval().requires_grad_(False)


def _context_for(clf: nn.Module, x: torch.Tensor, labels: torch.Tensor, cond_name: str = "vector") -> LossContext:
    batch = make_conditioning(cond_name, 3)(labels, torch.Generator().manual_seed(0))
    with capture_bn_stats(clf) as stats:
        logits, feats = clf.forward_with_features(x)
    z = torch.randn(len(x), 4, generator=torch.Generator().manual_seed(2))
    h = len(x) // 2  # the first and second halves stand in for two latents of one condition
    return LossContext(x=x, logits=logits, features=feats, cond=batch, classifier=clf, bn_stats=stats,
                       generator=torch.Generator().manual_seed(0), pair=(x[:h], x[h:2 * h], z[:h], z[h:2 * h]))


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_decreases_under_adam_on_the_pixels(name: str) -> None:
    clf = _bn_classifier()
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    torch.manual_seed(1)
    x = (torch.rand(6, 1, 8, 8) * 1.6 - 0.3).requires_grad_(True)  # some pixels outside [0, 1] for 'range'
    term = make_loss(name)
    opt = torch.optim.Adam([x], lr=0.05)
    first = None
    for _ in range(15):
        value = term(_context_for(clf, x, labels))
        assert value.dim() == 0 and torch.isfinite(value)
        first = value.item() if first is None else first
        opt.zero_grad()
        value.backward()
        opt.step()
    assert term(_context_for(clf, x, labels)).item() < first


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_sends_gradients_to_the_generator_only(name: str) -> None:
    clf = _bn_classifier()
    before = copy.deepcopy(clf.state_dict())
    G = make_generator("conv", input_shape=(1, 8, 8), latent_dim=4, code_dim=3, width=4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    batch = make_conditioning("vector", 3)(labels, torch.Generator().manual_seed(0))
    x = G(torch.randn(6, 4), batch.code)
    value = make_loss(name)(_context_for(clf, x, labels))
    value.backward()
    grads = [p.grad for p in G.parameters()]
    assert all(g is not None for g in grads)
    if name != "range":  # a sigmoid output never leaves [0, 1]: the range term is 0 with 0 gradient
        assert any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in clf.parameters())
    after = clf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_image_stats_matches_hand_computation() -> None:
    # one channel, pixels (0, 0, 1, 1): mean 1/2, population std 1/2; against (0.25, 0.5): (1/4)^2 + 0
    x = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]])
    clf = build_model("mlp", input_shape=(1, 2, 2), n_classes=3, mean=[0.25], std=[0.5])
    assert make_loss("image_stats")(_ctx(x=x, classifier=clf)).item() == pytest.approx(0.0625, abs=1e-7)
    # explicit statistics override the classifier's: (1/2 - 0)^2 + (1/2 - 1)^2 = 1/2
    assert make_loss("image_stats", mean=0.0, std=1.0)(_ctx(x=x, classifier=clf)).item() == pytest.approx(0.5, abs=1e-7)
    with pytest.raises(ValueError, match="no 'mean' buffer"):
        make_loss("image_stats")(_ctx(x=x, classifier=nn.Identity()))


def test_mode_seeking_matches_hand_computation() -> None:
    # pair 1: |x_a - x_b| = 1 everywhere, |z_a - z_b| = 2: ratio 1/2, term 2; pair 2: ratio 1/4 / 1, term 4
    xa = torch.zeros(2, 1, 2, 2)
    xb = torch.stack([torch.ones(1, 2, 2), torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])])
    za, zb = torch.zeros(2, 3), torch.tensor([[2.0, 2.0, 2.0], [1.0, 1.0, 1.0]])
    ctx = _ctx(x=torch.zeros(2, 1, 2, 2))
    ctx.pair = (xa, xb, za, zb)
    assert make_loss("mode_seeking", eps=1e-9)(ctx).item() == pytest.approx(3.0, rel=1e-6)
    ctx.pair = None
    with pytest.raises(ValueError, match="needs pairs"):
        make_loss("mode_seeking")(ctx)
    assert make_objective(["ce:1", "mode_seeking:0.05"]).needs_pair and not make_objective(["ce:1"]).needs_pair
