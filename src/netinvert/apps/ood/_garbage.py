"""The garbage-class building blocks: widen a head, select inverted samples, train with class weights.

The loop of arXiv 2505.23448 (see :func:`netinvert.apps.ood.run_ood`) extends an ``n``-class
classifier to ``n + 1`` outputs, feeds the extra "garbage" class with noise and inverted samples,
and retrains with class-weighted cross-entropy. This module holds its three pieces:

- :func:`widen_head`: a copy of a zoo classifier with one more output whose first ``n`` logits equal
  the original's exactly; the garbage row is the mean of the real rows, so its logit is the mean of
  the real logits and never exceeds their maximum (the argmax is unchanged; ties go to the real class).
- the selection rules (:func:`make_selection`, :func:`list_selections`), which pick the inverted
  samples of the real labels that join the garbage class.
- :func:`train_weighted`: minibatch AdamW on class-weighted cross-entropy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._distributed import all_reduce_sum, average_buffers, current_world, data_parallel, pad, shard
from ..._progress import progress_bar
from ..._registry import Registry
from ...exceptions import TrainingDivergedError, UnsupportedLayerError
from ...models import build_model
from ._operating_point import garbage_argmax

__all__ = ["widen_head", "Selection", "SELECTIONS", "register_selection", "make_selection", "list_selections",
           "balanced_class_weights", "train_weighted", "predict_logits", "predict_labels", "split_validation"]

log = logging.getLogger(__name__)


def widen_head(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with one more output, the garbage class (the last index).

    Every layer but the head is copied unchanged; the head's ``n`` rows are copied and the new row
    is their mean, so the first ``n`` logits are exactly the original ones and the garbage logit
    (their mean) is never above their maximum: predictions on any input stay those of ``model``.

    Parameters
    ----------
    model : Classifier
        A registered zoo classifier (``mlp``, ``cnn``, ``resnet``) whose last layer is the
        ``nn.Linear`` attribute ``head``.

    Returns
    -------
    Classifier
        A new model with ``n_classes + 1`` outputs, in eval mode on ``model``'s device.

    Raises
    ------
    UnsupportedLayerError
        If ``model`` is not a registered zoo classifier with a linear ``head`` (a TorchScript or
        hooked foreign model cannot be rebuilt wider).

    Examples
    --------
    >>> import torch
    >>> from netinvert.models import build_model
    >>> clf = build_model("mlp", input_shape=(1, 8, 8), n_classes=3, hidden=[8]).eval()
    >>> wide = widen_head(clf)
    >>> x = torch.rand(4, 1, 8, 8)
    >>> torch.equal(wide(x)[:, :3], clf(x)), wide.n_classes
    (True, 4)
    """
    from ...models import registry_name
    from ...exceptions import RunFormatError

    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear) or not hasattr(model, "get_params"):
        raise UnsupportedLayerError(
            f"Cannot add a garbage class to {type(model).__name__}: only netinvert zoo classifiers whose last layer is "
            "the nn.Linear 'head' can be widened (a TorchScript or state-dict model cannot). Retrain it with "
            "'netinvert train' or start from --dataset/--model.")
    try:
        name = registry_name(model)
    except RunFormatError:
        raise UnsupportedLayerError(
            f"Cannot add a garbage class to {type(model).__name__}: it is not a registered model, so it cannot be rebuilt "
            "with one more output. Register it with netinvert.models.register_model.") from None
    params = dict(model.get_params())
    n = int(params["n_classes"])
    params["n_classes"] = n + 1
    wide = build_model(name, **params)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = wide.load_state_dict(state, strict=False)
    if unexpected or sorted(missing) != ["head.bias", "head.weight"]:
        raise UnsupportedLayerError(f"Cannot widen {name!r}: its layers besides 'head' did not map one to one "
                                    f"(missing {missing}, unexpected {unexpected}).")
    with torch.no_grad():
        w, b = head.weight.detach().cpu(), head.bias.detach().cpu()
        wide.head.weight.copy_(torch.cat([w, w.mean(0, keepdim=True)]))
        wide.head.bias.copy_(torch.cat([b, b.mean(0, keepdim=True)]))
    device = next(model.parameters()).device
    return wide.to(device).eval()


# --------------------------------------------------------------------------- selection rules


@dataclass(frozen=True)
class Selection:
    """A rule picking which inverted samples of the real labels join the garbage class.

    ``select(x, y, context) -> bool mask (N,)``: ``x`` are samples ``(N, C, H, W)`` generated for the
    real labels ``y`` (``(N,)``, in ``[0, n)``); ``context`` gives ``verifiers`` (a
    :class:`~netinvert.metrics.Verifiers` trained on the run's training split, or None when the rule
    does not need one) and ``model`` (the current ``(n+1)``-class model).
    """

    name: str
    description: str
    select: Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]
    needs_verifiers: bool = False


SELECTIONS: Registry[Selection] = Registry("selection rule")


def register_selection(name: str, *, description: str, needs_verifiers: bool = False
                       ) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Register ``select(x, y, context) -> mask`` under ``name``."""

    def decorator(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        SELECTIONS.add(name, Selection(name, description, fn, needs_verifiers))
        return fn

    return decorator


def make_selection(name: str) -> Selection:
    """The registered rule ``name``; an unknown name lists the valid ones (:class:`UnknownNameError`)."""
    return SELECTIONS.get(name)


def list_selections() -> list[str]:
    """Registered selection rule names, sorted."""
    return SELECTIONS.names()


@register_selection("all", description="every inverted sample of a real label joins the garbage class")
def _select_all(x: torch.Tensor, y: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
    return torch.ones(len(x), dtype=torch.bool)


@register_selection("robust-disagree", needs_verifiers=True,
                    description="inverted samples whose label the independent robust verifier does not give "
                                "(the 'incoherent' ones: accepted by the model, not like the data)")
def _select_robust(x: torch.Tensor, y: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
    robust = context["verifiers"].robust
    return predict_labels(robust, x) != y


@register_selection("none", description="no inverted sample joins: the noise-only ablation (garbage = noise seed only)")
def _select_none(x: torch.Tensor, y: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
    return torch.zeros(len(x), dtype=torch.bool)


# --------------------------------------------------------------------------- training


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits ``(N, K)`` (CPU) of non-empty images ``x`` under ``model`` in eval mode (the mode is restored)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    model.train(was)
    return torch.cat(out)


def predict_labels(model: nn.Module, x: torch.Tensor, batch_size: int = 512, *, garbage_bias: float = 0.0) -> torch.Tensor:
    """Argmax labels ``(N,)`` (CPU) of images ``x``, ``garbage_bias`` added to the last logit (:func:`garbage_argmax`)."""
    if len(x) == 0:
        return torch.empty(0, dtype=torch.long)
    return garbage_argmax(predict_logits(model, x, batch_size), garbage_bias)


def balanced_class_weights(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """scikit-learn's "balanced" weights ``w_c = N / (K n_c)`` (1 for a class absent from ``y``)."""
    counts = torch.bincount(y, minlength=n_classes).double()
    w = torch.where(counts > 0, len(y) / (n_classes * counts.clamp_min(1)), torch.ones_like(counts))
    return w.float()


def train_weighted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, *, epochs: int,
                   batch_size: int, lr: float, weight_decay: float, seed: int, device: torch.device,
                   progress: bool = False, desc: str = "retrain") -> list[float]:
    """Train ``model`` on ``(x, y)`` with ``cross_entropy(weight=weights)``; returns the mean loss per epoch.

    AdamW at a constant ``lr``; the batch order comes from a generator seeded with ``seed``.

    Inside an initialised ``torch.distributed`` process group (``torchrun``) it is data parallel: every rank
    draws the same order (padded to a multiple of the world size, as DistributedSampler does), trains on
    its share of each global batch of ``batch_size`` (which must be a multiple of the world size), and the
    loss of each rank is its part of the global batch's weighted mean, so DDP's averaged gradient is that
    of the whole batch. Every rank ends with the same weights and batch-norm statistics.

    Raises
    ------
    TrainingDivergedError
        If the loss becomes NaN or infinite (lower ``lr``).
    """
    world = current_world()
    if world.distributed and batch_size % world.size:
        raise ValueError(f"The global batch_size {batch_size} must be a multiple of the {world.size} processes.")
    gen = torch.Generator().manual_seed(int(seed))
    model.to(device).train()
    net = data_parallel(model, device, world)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    w = weights.to(device)
    n = len(x) + (-len(x) % world.size)
    steps = math.ceil(n / batch_size)
    losses: list[float] = []
    bar = progress_bar(total=epochs * steps, desc=desc, enabled=progress and world.is_main)
    try:
        for _ in range(epochs):
            perm = pad(torch.randperm(len(x), generator=gen), world)
            total = 0.0
            for i in range(steps):
                batch = perm[i * batch_size:(i + 1) * batch_size]
                idx = shard(batch, world)
                xb, yb = x[idx].to(device), y[idx].to(device)
                if world.distributed:
                    if len(idx) < 2:  # batch norm cannot normalise one sample (every rank agrees)
                        continue
                    # this rank's part of the global weighted mean; DDP divides the summed gradients by the world size
                    share = world.size / float(weights[y[batch]].sum())
                    loss = F.cross_entropy(net(xb), yb, weight=w, reduction="sum") * share
                    value = all_reduce_sum([float(loss.detach()) / world.size], world)[0]
                else:
                    loss = F.cross_entropy(net(xb), yb, weight=w)
                    value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingDivergedError(f"The weighted cross-entropy became {value} while retraining with the "
                                                "garbage class; lower the learning rate (retrain_lr).")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += value * len(batch)
                bar.update(1)
            losses.append(total / n)
    finally:
        bar.close()
    del net
    average_buffers(model, world)
    model.eval()
    return losses


def split_validation(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train, validation)`` of a seeded random split of ``n`` items (at least one in each)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    n_val = min(max(1, round(n * fraction)), n - 1)
    return perm[n_val:].sort().values, perm[:n_val].sort().values

