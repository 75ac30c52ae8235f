"""The KKT reconstruction attack (Haim et al. 2022, arXiv 2206.07758; multi-class: Buzaglo et al. 2023).

A network trained long enough by gradient descent (to the direction of a margin maximiser, or with
weight decay to a stationary point of the regularised loss) has weights that are a non-negative
combination of its training points' gradients::

    theta  ~=  sum_i lambda_i * grad_theta margin(x_i),   lambda_i >= 0,
    margin(x) = f_y(x) - max_{j != y} f_j(x).

The attack turns this around: ``m`` candidate images ``x_i`` (labels drawn class-balanced) and their
multipliers ``lambda_i`` are optimised until the combination reproduces the trained weights. The sum
of weighted gradients is the gradient of the weighted sum of margins, so one backward pass (with
``create_graph``) gives it for every candidate at once, and a second one the update of the
candidates. ReLUs are replaced by a steep softplus while attacking (as the authors do): a ReLU's
second derivative is zero, which would leave the candidates only the linear part of the gradient
to learn from; other activations are kept.

Loss (each term as in the papers): the squared residual relative to ``||theta||^2``, a hinge
``relu(lambda_min - lambda_i)`` that keeps multipliers away from zero (a candidate with
``lambda = 0`` explains nothing), and a hinge on pixels outside [0, 1].
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import bad_param
from ..._progress import progress_bar

__all__ = ["KKTResult", "kkt_reconstruct"]


@dataclass(frozen=True)
class KKTResult:
    """Candidates ``x`` (in [0, 1]) with their ``labels`` and multipliers, and how well they explain the weights.

    ``residual`` is ``||theta - sum_i lambda_i grad margin_i|| / ||theta||`` at the end (0: the
    candidates reproduce the weights exactly); ``history`` holds it every 50 steps.
    """

    x: torch.Tensor
    labels: torch.Tensor
    lambdas: torch.Tensor
    steps: int
    residual: float
    history: list[float]

    def top(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``n`` candidates with the largest multipliers (those that carry most of the weights), in index order.

        This is the selection rule when fewer reconstructions than candidates are wanted: fixed
        before any member was looked at, it uses nothing but the attack's own output.
        """
        keep = self.lambdas.argsort(descending=True)[:n].sort().values
        return self.x[keep], self.labels[keep]


def _smooth_relus(model: nn.Module, beta: float) -> nn.Module:
    """A copy of ``model`` in eval mode with every ``nn.ReLU`` replaced by ``Softplus(beta)``."""
    smooth = copy.deepcopy(model).eval()
    for name, child in list(smooth.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.ReLU):
                setattr(child, attr, nn.Softplus(beta=beta))
    return smooth


def _margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``f_y(x) - max_{j != y} f_j(x)`` per row (Buzaglo et al.'s multi-class margin)."""
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).max(1).values
    return own - others


def kkt_reconstruct(classifier: nn.Module, n_candidates: int, *, steps: int | None = 3000, seconds: float | None = None,
                    lr: float = 0.01, lr_lambda: float = 0.01, lambda_min: float = 0.01, softplus_beta: float = 100.0,
                    init_std: float = 0.05, seed: int = 0, progress: bool = False) -> KKTResult:
    """Optimise ``n_candidates`` images and multipliers so that their margin gradients sum to the classifier's weights.

    Parameters
    ----------
    classifier : Classifier
        Any netinvert classifier (``n_classes``, ``input_shape``); it is not modified.
    n_candidates : int
        Candidates, labels drawn class-balanced; the papers use about twice the training set.
    steps, seconds : optional
        The budget, whichever ends first (at least one).
    lr, lr_lambda : float
        Adam's step sizes for the pixels and the multipliers.
    lambda_min : float
        Multipliers below it are penalised.
    softplus_beta : float
        Steepness of the softplus that stands in for ReLU while attacking.
    init_std : float
        Candidates start at 0.5 plus Gaussian noise of this deviation.
    seed : int
    progress : bool

    Raises
    ------
    ValueError
        On a bad argument.
    FloatingPointError
        If the loss becomes NaN or infinite (lower ``lr``).
    """
    if steps is None and seconds is None:
        raise ValueError("kkt_reconstruct needs a budget: steps, seconds or both.")
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 1:
        raise bad_param("kkt_reconstruct", "n_candidates", "an int in [1, inf)", n_candidates)
    for name, value in (("lr", lr), ("lr_lambda", lr_lambda), ("softplus_beta", softplus_beta), ("init_std", init_std)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise bad_param("kkt_reconstruct", name, "a float > 0", value)
    k = int(classifier.n_classes)
    device = next(classifier.parameters()).device
    model = _smooth_relus(classifier, float(softplus_beta))
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    theta = [p.detach().clone() for p in params]
    scale = sum(float((t ** 2).sum()) for t in theta)
    g = torch.Generator().manual_seed(int(seed))
    labels = (torch.arange(n_candidates) % k)[torch.randperm(n_candidates, generator=g)].to(device)
    x = (0.5 + init_std * torch.randn((n_candidates, *classifier.input_shape), generator=g)).to(device).requires_grad_(True)
    lam = torch.full((n_candidates,), 2 * lambda_min, device=device).requires_grad_(True)
    opt = torch.optim.Adam([{"params": [x], "lr": lr}, {"params": [lam], "lr": lr_lambda}])
    history: list[float] = []
    bar = progress_bar(total=steps, desc="kkt", enabled=progress)
    t0, done, residual = time.perf_counter(), 0, float("nan")
    try:
        while steps is None or done < steps:
            if seconds is not None and time.perf_counter() - t0 >= seconds:
                break
            margins = _margins(model(x), labels)
            combo = torch.autograd.grad((lam * margins).sum(), params, create_graph=True)
            fit = sum(((t - c) ** 2).sum() for t, c in zip(theta, combo)) / scale
            loss = fit + F.relu(lambda_min - lam).sum() + (F.relu(x - 1) + F.relu(-x)).sum()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"The KKT loss became {float(loss)} at step {done}; lower lr.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            residual = float(fit.detach()) ** 0.5
            if done % 50 == 0:
                history.append(residual)
            done += 1
            bar.update(1)
    finally:
        bar.close()
    return KKTResult(x=x.detach().clamp(0, 1).cpu(), labels=labels.cpu(), lambdas=lam.detach().cpu(), steps=done,
                     residual=residual, history=history)
