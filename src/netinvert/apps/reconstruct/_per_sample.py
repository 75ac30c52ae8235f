"""Per-sample input optimisation: the baseline that optimises each reconstruction's pixels directly.

The same objective as the generator (any loss list, e.g. the ``tldr`` preset's), but no generator:
``n`` images, one label each (class-balanced), are parameters ``x = sigmoid(u)`` updated by Adam.
Without a generator nothing is shared between samples, so this separates what the TLDR terms do
from what the generator's inductive bias does (issue 11, baseline b).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...inversion import ConditionBatch, LossContext, capture_bn_stats, make_objective

__all__ = ["optimise_inputs"]


def optimise_inputs(classifier: nn.Module, losses: str | Sequence[str], n: int, *, steps: int | None = 1000,
                    seconds: float | None = None, lr: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``n`` class-balanced images optimised one by one (in one batch) under ``losses``; returns ``(x, labels, steps)``.

    Pixels are ``sigmoid(u)`` (always in [0, 1]), ``u`` starts at small Gaussian noise. Every step
    evaluates the objective on the whole batch until ``steps`` steps or ``seconds`` seconds, whichever
    ends first (at least one of them must be given).
    """
    if steps is None and seconds is None:
        raise ValueError("optimise_inputs needs a budget: steps, seconds or both.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"The 'n' parameter of optimise_inputs must be an int in [1, inf). Got {n!r} instead.")
    objective = make_objective(losses)
    k = int(classifier.n_classes)
    device = next(classifier.parameters()).device
    classifier.eval()
    for p in classifier.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(int(seed))
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)].to(device)
    onehot = F.one_hot(labels, k).float()
    cond = ConditionBatch(labels, onehot, onehot, None)
    u = (0.1 * torch.randn((n, *classifier.input_shape), generator=g)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    needs_bn = any(t.reads_bn_stats for _, t in objective.parts())
    t0, done = time.perf_counter(), 0
    while steps is None or done < steps:
        if seconds is not None and time.perf_counter() - t0 >= seconds:
            break
        x = torch.sigmoid(u)
        if needs_bn:
            with capture_bn_stats(classifier) as stats:
                logits, features = classifier.forward_with_features(x)
        else:
            stats = []
            logits, features = classifier.forward_with_features(x)
        ctx = LossContext(x=x, logits=logits, features=features.flatten(1), cond=cond, classifier=classifier,
                          bn_stats=stats, generator=g)
        loss = objective(ctx)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"The per-sample objective became {float(loss)} at step {done}; lower lr.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
    for p in classifier.parameters():
        p.requires_grad_(True)
    return torch.sigmoid(u).detach().cpu(), labels.cpu(), done
