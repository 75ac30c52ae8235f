"""Adversarial examples: PGD against closed forms, the norms, the generator, both workflows, the CLI and refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from netinvert.apps.adversarial import (GENERATOR_LOSSES, GENERATOR_OUTPUTS, PGD, AdversarialGenerator, AdversarialRunConfig,
                                        AttackConfig, list_generator_losses, list_norms, make_norm, run_adversarial_training,
                                        run_attack)
from netinvert.cli import main
from netinvert.exceptions import NotFittedError, RunFormatError, UnknownNameError
from netinvert.models import Classifier


class Linear(torch.nn.Module):
    """``f(x) = W flatten(x) + b``: the model whose optimal perturbations are known in closed form."""

    def __init__(self, n_classes: int, shape: tuple[int, ...] = (1, 4, 4), seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.input_shape, self.n_classes = shape, n_classes
        self.fc = torch.nn.Linear(math.prod(shape), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _mid_images(n: int, shape: tuple[int, ...] = (1, 4, 4)) -> torch.Tensor:
    """Images well inside [0, 1], so clamping to the input range never cuts the optimal step."""
    return 0.4 + 0.2 * torch.rand(n, *shape, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------- PGD and the norms


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_linf_on_a_binary_linear_model_is_eps_sign_of_the_weight_difference(random_start: bool) -> None:
    model, x = Linear(2), _mid_images(6)
    y = model(x).argmax(1)
    w = model.fc.weight.detach()
    w_diff = w[1 - y] - w[y]  # towards the other class
    x_adv = PGD(model, eps=0.05, norm="linf", steps=10, random_start=random_start)(
        x, y, generator=torch.Generator().manual_seed(0))
    expected = x + 0.05 * torch.sign(w_diff).view_as(x)
    torch.testing.assert_close(x_adv, expected, atol=1e-6, rtol=0)


def test_pgd_l2_on_a_binary_linear_model_is_eps_along_the_weight_difference() -> None:
    model, x = Linear(2), _mid_images(6)
    y = model(x).argmax(1)
    w = model.fc.weight.detach()
    w_diff = w[1 - y] - w[y]
    x_adv = PGD(model, eps=0.3, norm="l2", steps=10, random_start=False)(x, y)
    expected = x + (0.3 * w_diff / w_diff.norm(dim=1, keepdim=True)).view_as(x)
    torch.testing.assert_close(x_adv, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_margin_pgd_on_a_multiclass_linear_model_follows_the_target_direction(norm: str) -> None:
    model, x = Linear(5), _mid_images(8)
    y = model(x).argmax(1)
    t = (y + 2) % 5
    w = model.fc.weight.detach()
    w_diff = w[t] - w[y]
    eps = 0.05 if norm == "linf" else 0.3
    # One full step: the margin's runner-up is y (the argmax) where it starts, so the gradient is w_t - w_y.
    x_adv = PGD(model, eps=eps, norm=norm, steps=1, alpha=eps, random_start=False, loss="margin")(x, y, target=t)
    step = eps * torch.sign(w_diff) if norm == "linf" else eps * w_diff / w_diff.norm(dim=1, keepdim=True)
    torch.testing.assert_close(x_adv, x + step.view_as(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", list_norms())
def test_norms_keep_every_point_in_the_ball(norm: str) -> None:
    n, eps = make_norm(norm), 0.2
    x = torch.rand(16, 1, 5, 5)
    big = 10 * torch.randn(16, 1, 5, 5)
    for delta in (n.project(big, eps), n.squash(big, eps), n.random_start(x, eps, torch.Generator().manual_seed(0))):
        assert bool((n.measure(delta) <= eps + 1e-5).all())
    small = 1e-3 * torch.ones(16, 1, 5, 5)
    torch.testing.assert_close(n.project(small, eps), small)  # inside the ball: unchanged


def test_pgd_hurts_the_digits_cnn_and_stays_in_the_input_range(digits, digits_cnn) -> None:
    x, y = digits.x_test[:100], digits.y_test[:100]
    x_adv = PGD(digits_cnn, eps=0.2, steps=10)(x, y, generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.2 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert (digits_cnn(x_adv).argmax(1) == y).float().mean() < (digits_cnn(x).argmax(1) == y).float().mean() - 0.2


def test_our_pgd_matches_torchattacks(digits, digits_cnn) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits.x_test[:200], digits.y_test[:200]
    ours = PGD(digits_cnn, eps=0.1, steps=20)
    lib = torchattacks.PGD(digits_cnn, eps=0.1, alpha=ours.alpha, steps=20, random_start=True)
    torch.manual_seed(0)
    x_ours, x_lib = ours(x, y, generator=torch.Generator().manual_seed(0)), lib(x, y)
    with torch.no_grad():
        rate_ours = (digits_cnn(x_ours).argmax(1) != y).float().mean()
        rate_lib = (digits_cnn(x_lib).argmax(1) != y).float().mean()
    assert abs(float(rate_ours) - float(rate_lib)) <= 0.01


@pytest.mark.parametrize("eps", [0, -0.1, 1.5, float("nan"), True])
def test_bad_eps_is_refused_naming_it(eps: float) -> None:
    with pytest.raises(ValueError, match="The 'eps' parameter of PGD"):
        PGD(Linear(2), eps=eps)


def test_unknown_norm_and_target_equal_to_the_label_are_refused() -> None:
    with pytest.raises(UnknownNameError, match="Unknown norm 'l3'. Valid names: l2, linf"):
        PGD(Linear(2), eps=0.1, norm="l3")
    x, y = _mid_images(2), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="'target' parameter of PGD must differ from the true label"):
        PGD(Linear(2), eps=0.1)(x, y, target=torch.tensor([1, 1]))


# --------------------------------------------------------------------------- the generator


@pytest.fixture(scope="module")
def fitted(digits, digits_cnn: Classifier) -> AdversarialGenerator:
    return AdversarialGenerator(digits_cnn, eps=0.1, seed=0).fit(digits.x_train, digits.y_train, steps=300,
                                                                 progress=False)


def test_generator_beats_random_perturbations_of_the_same_budget(digits, digits_cnn, fitted) -> None:
    x, y = digits.x_test, digits.y_test
    with torch.no_grad():
        ok = digits_cnn(x).argmax(1) == y
        x_gen = fitted(x, y, seed=0)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        x_rand = (x + 0.1 * noise.sign()).clamp(0, 1)
        gen_rate = float(((digits_cnn(x_gen).argmax(1) != y) & ok).sum() / ok.sum())
        rand_rate = float(((digits_cnn(x_rand).argmax(1) != y) & ok).sum() / ok.sum())
    assert (x_gen - x).abs().max() <= 0.1 + 1e-6 and x_gen.min() >= 0 and x_gen.max() <= 1
    assert gen_rate > rand_rate + 0.05, (gen_rate, rand_rate)


def test_generator_draws_are_distinct_and_seeded(digits, fitted) -> None:
    x, y = digits.x_test[:20], digits.y_test[:20]
    draws = fitted.samples(x, y, 3, seed=1)
    assert draws.shape == (3, *x.shape)
    assert (draws[0] - draws[1]).abs().mean() > 1e-3
    torch.testing.assert_close(fitted.samples(x, y, 3, seed=1), draws)
    target = (y + 1) % 10
    assert fitted(x, y, target=target).shape == x.shape


def test_generator_losses_on_hand_made_margins() -> None:
    assert list_generator_losses() == ["boundary", "margin"]
    m = torch.tensor([-10.0, -2.0, 0.0, 2.0, 10.0], requires_grad=True)
    clamped = GENERATOR_LOSSES.get("margin")(m, 2.0)
    torch.testing.assert_close(clamped, torch.tensor([-2.0, -2.0, 0.0, 2.0, 10.0]))
    (grad,) = torch.autograd.grad(clamped.sum(), m)
    torch.testing.assert_close(grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0]))  # far out of reach pulls as hard as close
    soft = GENERATOR_LOSSES.get("boundary")(m, 2.0)
    torch.testing.assert_close(soft[2], torch.tensor(0.5))  # on the boundary: half a failure
    torch.testing.assert_close(soft[1], torch.sigmoid(torch.tensor(-1.0)))
    assert soft[0] < 0.01 and soft[4] > 0.99  # won: ~0 failures; out of reach: ~1
    (grad,) = torch.autograd.grad(soft.sum(), m)
    torch.testing.assert_close(grad[2], torch.tensor(1 / 8))  # sigmoid'(0) / kappa, the largest
    assert grad[4] < grad[3] < grad[2] and grad[4] < 0.01  # out of reach: almost no pull


def test_boundary_loss_trains_a_generator_that_beats_random_noise(digits, digits_cnn) -> None:
    x, y = digits.x_test, digits.y_test
    gen = AdversarialGenerator(digits_cnn, eps=0.1, loss="boundary", seed=0).fit(
        digits.x_train, digits.y_train, steps=300, progress=False)
    assert gen.get_params()["loss"] == "boundary"
    with torch.no_grad():
        ok = digits_cnn(x).argmax(1) == y
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        rates = [float(((digits_cnn(adv).argmax(1) != y) & ok).sum() / ok.sum())
                 for adv in (gen(x, y, seed=0), (x + 0.1 * noise.sign()).clamp(0, 1))]
    assert rates[0] > rates[1] + 0.05, rates


def test_corner_output_is_the_sign_forward_and_the_squash_backward() -> None:
    norm, raw = make_norm("linf"), torch.tensor([[3.0, -0.1, 0.5, -2.0]], requires_grad=True)
    corner = GENERATOR_OUTPUTS.get("corner")(norm, raw, 0.1)
    torch.testing.assert_close(corner, torch.tensor([[0.1, -0.1, 0.1, -0.1]]))  # every pixel on the surface
    (g_corner,) = torch.autograd.grad((corner * torch.arange(4.0)).sum(), raw)
    (g_squash,) = torch.autograd.grad((norm.squash(raw, 0.1) * torch.arange(4.0)).sum(), raw)
    torch.testing.assert_close(g_corner, g_squash)  # straight through: the squash's gradient
    l2 = make_norm("l2")
    torch.testing.assert_close(GENERATOR_OUTPUTS.get("corner")(l2, raw, 0.5), l2.squash(raw, 0.5))  # L2: the same


def test_corner_generator_moves_every_free_pixel_by_eps(digits, digits_cnn) -> None:
    x, y = digits.x_test[:30], digits.y_test[:30]
    gen = AdversarialGenerator(digits_cnn, eps=0.1, output="corner", seed=0).fit(digits.x_train, digits.y_train, steps=5,
                                                                                 progress=False)
    delta = gen(x, y, seed=0) - x
    free = (x > 0.1) & (x < 0.9)  # pixels the input range does not clamp
    torch.testing.assert_close(delta[free].abs(), torch.full_like(delta[free], 0.1))


def test_mean_draw_is_one_deterministic_example_in_the_ball(digits, fitted) -> None:
    x, y = digits.x_test[:20], digits.y_test[:20]
    draws = fitted.samples(x, y, 3, seed=1, draw="mean")
    torch.testing.assert_close(draws[0], draws[2])  # z = 0 and no dropout: every draw is the same
    torch.testing.assert_close(fitted(x, y, seed=5, draw="mean"), draws[0])  # and the seed does not matter
    assert (draws[0] - x).abs().max() <= 0.1 + 1e-6
    assert (fitted(x, y, seed=1) - draws[0]).abs().mean() > 1e-3  # a random draw is another example
    with pytest.raises(UnknownNameError, match="Unknown generator draw 'median'. Valid names: mean, random"):
        fitted(x, y, draw="median")


def test_true_label_generator_reads_the_label_and_attacks(digits, digits_cnn) -> None:
    x, y = digits.x_test, digits.y_test
    gen = AdversarialGenerator(digits_cnn, eps=0.1, targeted_fraction=0.0, true_label=True, seed=0).fit(
        digits.x_train, digits.y_train, steps=300, progress=False)
    assert gen.get_params()["true_label"] is True
    with torch.no_grad():
        ok = digits_cnn(x).argmax(1) == y
        adv = gen(x, y, draw="mean")
        other = gen(x, (y + 1) % 10, draw="mean")  # the same images shown another label
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        rates = [float(((digits_cnn(a).argmax(1) != y) & ok).sum() / ok.sum())
                 for a in (adv, (x + 0.1 * noise.sign()).clamp(0, 1))]
    assert (adv - other).abs().mean() > 1e-3  # the label is an input: another label, another perturbation
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    assert rates[0] > rates[1] + 0.05, rates
    with pytest.raises(ValueError, match="The 'true_label' parameter of AdversarialGenerator must be a bool"):
        AdversarialGenerator(digits_cnn, eps=0.1, true_label=1).validate()  # type: ignore[arg-type]


def test_l2_generator_stays_in_its_ball(digits, digits_cnn) -> None:
    x, y = digits.x_test[:50], digits.y_test[:50]
    gen = AdversarialGenerator(digits_cnn, eps=0.5, norm="l2").fit(digits.x_train, digits.y_train, steps=5, progress=False)
    draws = gen.samples(x, y, 2, target=(y + 3) % 10)
    assert bool(((draws - x).flatten(2).norm(dim=2) <= 0.5 + 1e-5).all())


def test_generator_refusals(digits, digits_cnn, fitted) -> None:
    x, y = digits.x_test[:4], digits.y_test[:4]
    with pytest.raises(NotFittedError):
        AdversarialGenerator(digits_cnn, eps=0.1)(x, y)
    with pytest.raises(ValueError, match="must differ from the true label"):
        fitted(x, y, target=y)
    with pytest.raises(ValueError, match="needs one label per image. Got 4 images and 2 labels"):
        fitted(x, y[:2])
    with pytest.raises(ValueError, match="The 'eps' parameter of AdversarialGenerator must be a float in \\(0, 8\\]"):
        AdversarialGenerator(digits_cnn, eps=9.0, norm="l2").fit(x, y, steps=1, progress=False)
    with pytest.raises(ValueError, match="needs a budget"):
        AdversarialGenerator(digits_cnn, eps=0.1).fit(x, y, progress=False)
    with pytest.raises(ValueError, match="The 'loss' parameter of AdversarialGenerator must be one of \\['boundary', 'margin'\\]"):
        AdversarialGenerator(digits_cnn, eps=0.1, loss="hinge").fit(x, y, steps=1, progress=False)
    untargeted = AdversarialGenerator(digits_cnn, eps=0.1, targeted_fraction=0.0).fit(x, y, steps=1, progress=False)
    with pytest.raises(ValueError, match="untargeted only"):
        untargeted(x, y, target=(y + 1) % 10)


# --------------------------------------------------------------------------- the workflows and the CLI


@pytest.fixture(scope="module")
def generator_run(digits_cnn_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adv") / "gen"
    code = main(["adversarial", "train", "--classifier", str(digits_cnn_run), "--eps", "0.1", "--steps", "300",
                 "--no-progress", "--device", "cpu", "--threads", "1", "--out", str(out)])
    assert code == 0
    return out


def test_train_writes_a_complete_run(generator_run: Path, digits_cnn_run: Path) -> None:
    for name in ("card.json", "weights.safetensors", "metrics.json", "history.json", "examples.png"):
        assert (generator_run / name).is_file(), name
    card = json.loads((generator_run / "card.json").read_text())
    assert card["kind"] == "adversarial-generator" and card["threads"] == 1 and card["seed"] == 0
    assert len(card["classifier_sha256"]) == 64 and len(card["weights_sha256"]) == 64
    assert card["generator"]["params"]["eps"] == 0.1 and card["steps"] == 300


def test_attack_measures_generator_pgd_and_counterfeits(generator_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "attack"
    code = main(["adversarial", "attack", str(generator_run), "--split", "test", "-n", "200", "--counterfeit-steps", "20",
                 "--counterfeit-per-label", "5", "--verifier-epochs", "1", "--no-progress", "--device", "cpu",
                 "--threads", "1", "--out", str(out)])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    attacks = result["attacks"]
    for name in ("generator", "random", "pgd-10", "pgd-20", "pgd-40", "generator-targeted", "pgd-20-targeted"):
        row = attacks[name]
        assert 0 <= row["success"] <= 1 and row["max_norm"] <= 0.1 + 1e-5, name
        assert 0 <= row["transfer_plain"] <= 1 and 0 <= row["transfer_robust"] <= 1
    assert set(attacks["generator-targeted"]["per_target"]) <= {str(c) for c in range(10)}
    assert attacks["generator"]["success"] > attacks["random"]["success"]
    assert attacks["pgd-20"]["success"] >= attacks["random"]["success"]
    assert result["speedup"] > 1 and result["threads"] == 1 and result["n"] == 200
    assert 0 <= result["counterfeits"]["success"] <= 1 and result["counterfeits"]["n"] == 50
    assert 0 < result["generator_extras"]["distinct"]
    for name in ("card.json", "metrics.json", "examples.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "card.json").read_text())["kind"] == "adversarial-attack"


def test_true_label_run_records_it_and_a_card_without_it_loads_as_false(generator_run: Path, digits_cnn_run: Path,
                                                                       tmp_path: Path) -> None:
    from netinvert.apps.adversarial import load_generator_run

    out = tmp_path / "labelled"
    assert main(["adversarial", "train", "--classifier", str(digits_cnn_run), "--steps", "5", "--true-label",
                 "--no-progress", "--device", "cpu", "--threads", "1", "--out", str(out)]) == 0
    attacker, card = load_generator_run(out)
    assert card["generator"]["params"]["true_label"] is True and card["config"]["true_label"] is True
    assert attacker.true_label is True
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2])
    assert attacker(x, y).shape == x.shape
    # a run written before the option existed has no such key: it is the generator without the label
    old = tmp_path / "old"
    old.mkdir()
    for f in generator_run.iterdir():
        if f.is_file():
            (old / f.name).write_bytes(f.read_bytes())
    card = json.loads((old / "card.json").read_text())
    del card["generator"]["params"]["true_label"]
    (old / "card.json").write_text(json.dumps(card))
    assert load_generator_run(old)[0].true_label is False


def test_refusals_come_before_any_work(generator_run: Path, digits_cnn_run: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = [
        (["adversarial", "train", "--classifier", str(digits_cnn_run), "--eps", "0"], "'eps' parameter"),
        (["adversarial", "train", "--classifier", str(digits_cnn_run), "--eps", "1.5"], "'eps' parameter"),
        (["adversarial", "train", "--classifier", str(digits_cnn_run), "--norm", "l3"], "'norm' parameter"),
        (["adversarial", "train", "--classifier", str(digits_cnn_run), "--loss", "hinge"], "'loss' parameter"),
        (["adversarial", "train", "--classifier", str(generator_run)], "must be a classifier run"),
    ]
    for argv, message in bad:
        out = tmp_path / "never"
        assert main([*argv, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    assert main(["adversarial", "attack", str(digits_cnn_run)]) == 2
    assert "not an adversarial generator run" in capsys.readouterr().err
    assert main(["adversarial", "attack", str(generator_run), "--target", "10"]) == 2
    assert "'target' parameter" in capsys.readouterr().err
    assert main(["adversarial", "attack", str(generator_run), "--out", str(generator_run / "inside")]) == 2
    assert "overlaps the input" in capsys.readouterr().err


def test_configs_refuse_bad_fields(digits_cnn_run: Path) -> None:
    with pytest.raises(ValueError, match="The 'eps' parameter of AdversarialRunConfig must be a float in \\(0, 1\\]"):
        AdversarialRunConfig(classifier=digits_cnn_run, eps=-0.1).validate()
    with pytest.raises(ValueError, match="'conditioning' parameter of AdversarialRunConfig"):
        AdversarialRunConfig(classifier=digits_cnn_run, conditioning="matrix").validate()
    with pytest.raises(ValueError, match="'output' parameter of AdversarialRunConfig"):
        AdversarialRunConfig(classifier=digits_cnn_run, output="sign").validate()
    with pytest.raises(ValueError, match="'loss' parameter of AdversarialRunConfig"):
        AdversarialRunConfig(classifier=digits_cnn_run, loss="hinge").validate()
    with pytest.raises(ValueError, match="'draw' parameter of AttackConfig"):
        AttackConfig("x", draw="median").validate()
    with pytest.raises(ValueError, match="'split' parameter of AttackConfig"):
        AttackConfig("x", split="validation").validate()
    with pytest.raises(ValueError, match="'pgd_steps' parameter of AttackConfig"):
        AttackConfig("x", pgd_steps=(10, 40)).validate()
    with pytest.raises(ValueError, match="takes an AdversarialRunConfig"):
        run_adversarial_training({"classifier": digits_cnn_run}, "x")  # type: ignore[arg-type]
    with pytest.raises(RunFormatError):
        run_attack(AttackConfig(digits_cnn_run), None)
