"""The garbage-logit bias: exact budget on the data it is chosen on, maximal on its grid, monotone, clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from netinvert.apps.ood import OODRunConfig, calibrate_garbage_bias, garbage_argmax


def lost(logits: torch.Tensor, y: torch.Tensor, bias: float) -> int:
    """Images correct at b = 0 and wrong at ``bias``, counted by the prediction rule itself."""
    return int(((garbage_argmax(logits) == y) & (garbage_argmax(logits, bias) != y)).sum())


def random_case(seed: int, n: int = 500, k: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of an (n+1)-class model that is right about 80% of the time, with some images already sent to garbage."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=gen)
    logits = torch.randn(n, k + 1, generator=gen)
    logits[torch.arange(n), y] += 2.5
    return logits, y


def test_a_hand_computed_case() -> None:
    # Margins (best real logit - garbage logit) 1, 2, 3, 0.5; row 4 is wrong at b = 0 and never counts.
    logits = torch.tensor([[3.0, 0.0, 2.0], [0.0, 3.0, 1.0], [3.0, 0.0, 0.0], [0.0, 3.0, 2.5], [0.0, 3.0, 0.0]])
    y = torch.tensor([0, 1, 0, 1, 0])
    # N = 5: a budget of 0.2 allows one image, 0.4 two, 0.19 none.
    assert calibrate_garbage_bias(logits, y, 0.19) == 0.0
    assert calibrate_garbage_bias(logits, y, 0.2) == 0.5
    assert calibrate_garbage_bias(logits, y, 0.4) == 1.0
    assert calibrate_garbage_bias(logits, y, 1.0) == 3.0  # every correct image may go: the largest margin
    assert garbage_argmax(logits, 0.5).tolist() == [0, 1, 0, 1, 1]  # the tie at 0.5 keeps the real class
    assert garbage_argmax(logits, 0.6).tolist() == [0, 1, 0, 2, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_budget_holds_exactly_and_the_bias_is_the_largest_on_its_grid(seed: int) -> None:
    logits, y = random_case(seed)
    n = len(y)
    correct = (garbage_argmax(logits) == y)
    margins = (logits[:, :-1].max(1).values - logits[:, -1])[correct]
    for budget in (0.001, 0.002, 0.005, 0.01, 0.05, 0.2, 0.5):
        allowed = math.floor(budget * n + 1e-9)
        b = calibrate_garbage_bias(logits, y, budget)
        assert b >= 0 and lost(logits, y, b) <= allowed
        acc = lambda bias: float((garbage_argmax(logits, bias) == y).float().mean())  # noqa: E731
        assert acc(0.0) - acc(b) <= budget + 1e-12
        # Maximal: every larger margin on the grid would put more than `allowed` images at or below it,
        # and a bias just past the next one loses more than the budget.
        above = margins[margins > b]
        assert all(int((margins <= m).sum()) > allowed for m in above)
        if len(above):
            assert lost(logits, y, float(above.min()) + 1e-4) > allowed


def test_zero_budget_gives_zero_and_the_bias_grows_with_the_budget() -> None:
    logits, y = random_case(3)
    assert calibrate_garbage_bias(logits, y, 0.0) == 0.0
    assert calibrate_garbage_bias(logits, y, 0.0019) == 0.0  # floor(0.0019 * 500) = 0 images
    biases = [calibrate_garbage_bias(logits, y, b) for b in (0.0, 0.002, 0.004, 0.01, 0.03, 0.1, 0.3, 1.0)]
    assert biases == sorted(biases) and biases[-1] > biases[1] > 0
    shares = [float((garbage_argmax(logits, b) == logits.shape[1] - 1).float().mean()) for b in biases]
    assert shares == sorted(shares)


def test_ties_at_the_cut_step_the_bias_down() -> None:
    # Three correct images share the margin 1.0: allowing two of them must not cut at 1.0 (that would risk three).
    logits = torch.tensor([[2.0, 0.0, 1.5], [2.0, 0.0, 1.0], [2.0, 0.0, 1.0], [2.0, 0.0, 1.0], [2.0, 0.0, -1.0]])
    y = torch.zeros(5, dtype=torch.long)
    assert calibrate_garbage_bias(logits, y, 0.4) == 0.5  # two allowed: a cut at 1.0 would risk four
    assert calibrate_garbage_bias(logits, y, 0.6) == 0.5  # three allowed (3 of 5 images): still four at risk
    assert calibrate_garbage_bias(logits, y, 0.8) == 1.0  # four allowed: 0.5 and the whole tie group fit


def test_nothing_at_risk_gives_zero() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0], [3.0, 0.0, 4.0]])  # one wrong real label, one sent to garbage already
    assert calibrate_garbage_bias(logits, torch.tensor([0, 0]), 0.5) == 0.0


@pytest.mark.parametrize("budget", [-0.01, float("nan"), float("inf"), 1.5, True, "0.01", None])
def test_bad_budgets_name_the_argument(budget: object) -> None:
    logits, y = random_case(0, n=10)
    with pytest.raises(ValueError, match="'accuracy_budget' parameter of calibrate_garbage_bias must be a float in \\[0, 1\\]"):
        calibrate_garbage_bias(logits, y, budget)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'accuracy_budget' parameter of OODRunConfig"):
        OODRunConfig(dataset="digits", model="mlp", accuracy_budget=budget).validate()  # type: ignore[arg-type]


def test_bad_inputs_are_clear_errors() -> None:
    logits, y = random_case(0, n=10)
    with pytest.raises(ValueError, match="labels y of shape \\(N,\\) matching logits \\(10, 7\\)"):
        calibrate_garbage_bias(logits, y[:5], 0.1)
    with pytest.raises(ValueError, match="floating logits of shape \\(N, K\\)"):
        calibrate_garbage_bias(torch.ones(10, dtype=torch.long), y, 0.1)
    with pytest.raises(ValueError, match="garbage_argmax expects floating logits"):
        garbage_argmax(torch.ones(4, 1))
