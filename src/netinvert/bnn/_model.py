"""Binarised neural nets in PyTorch: binary/ternary linear layers, sign activations, training.

A BNN here is the network of Narodytska et al. as used by "Network Inversion of Binarised Neural
Nets" (arXiv 2402.11995): binarised inputs ``x in {-1,+1}^n``, blocks ``sign(BN(A x))`` with
``A in {-1,+1}`` (or ``{-1,0,+1}`` when ternary) and ``sign(0) = +1``, and a last binary layer whose
integer scores are compared by ``argmax`` (ties: the lowest index, as :func:`torch.argmax`).
Weights are learned as real *latent* weights and quantised in the forward pass; the gradient goes
straight through the quantiser (STE, clipped to ``|w| <= 1``), which is what makes binary layers
trainable at all.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import block_mask

__all__ = ["InputBinarizer", "BinaryLinear", "BNN", "BNNTrainConfig", "train_bnn", "bnn_accuracy"]

logger = logging.getLogger(__name__)


def _sign(x: torch.Tensor) -> torch.Tensor:
    """``sign`` with ``sign(0) = +1`` (the convention the CNF encodes)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _SignSTE(torch.autograd.Function):
    """Sign in the forward pass, hard-tanh gradient (1 inside [-1, 1], else 0) backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


@dataclass(frozen=True)
class InputBinarizer:
    """How images in [0, 1] become input bits: average-pool by ``pool``, then ``pixel > threshold``.

    The rule is part of the network (the CNF only sees bits), so it is stored in the run card.
    """

    pool: int = 1
    threshold: float = 0.5

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` floats in [0, 1] -> ``(N, n_inputs)`` bool bits."""
        x = images.float()
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        return (x > self.threshold).flatten(1)

    def describe(self) -> str:
        pool = f"{self.pool}x{self.pool} average pooling, then " if self.pool > 1 else ""
        return f"{pool}bit = pixel > {self.threshold}"


class BinaryLinear(nn.Module):
    """Linear layer without bias whose weights are ``sign(w)`` (or ternary) in the forward pass.

    Parameters
    ----------
    in_features, out_features : int
        Layer shape.
    ternary_delta : float or None
        If set, weights with ``|w| < ternary_delta`` are 0 (ternary ``{-1, 0, +1}``): zero weights drop
        out of the neuron's cardinality constraint, which makes the CNF narrower (solver-friendly
        training, as in EEV).
    fan_in : int or None
        If set, each neuron reads at most ``fan_in`` inputs: a fixed 0/1 ``mask`` buffer (all ones
        until :meth:`prune_to_fan_in_` keeps the ``fan_in`` largest latent weights of each row; a
        ``BNN(blocks=...)`` first layer has ``fan_in = in_features`` and its block mask copied in, which
        :func:`train_bnn` keeps because the model's own ``fan_in`` is None).
        Few inputs per neuron is what lets the exact counter :func:`~netinvert.bnn.count_all_labels`
        finish neurons early and merge their states (a dense 49-20 layer never does).
    """

    def __init__(self, in_features: int, out_features: int, *, ternary_delta: float | None = None,
                 fan_in: int | None = None) -> None:
        super().__init__()
        if fan_in is not None and not 1 <= fan_in <= in_features:
            raise ValueError(f"The 'fan_in' parameter of BinaryLinear must be an int in [1, {in_features}] or None. Got {fan_in!r} instead.")
        self.in_features = in_features
        self.out_features = out_features
        self.ternary_delta = ternary_delta
        self.fan_in = fan_in
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1) * 0.1)
        if fan_in is not None:
            self.register_buffer("mask", torch.ones(out_features, in_features))

    def quantized_weight(self) -> torch.Tensor:
        """The weights the forward pass uses, in {-1, +1} (or {-1, 0, +1})."""
        w = self.weight
        if self.fan_in is not None:
            w = w * self.mask  # pruned weights get no gradient either
        q = _sign(w)
        if self.ternary_delta is not None:
            q = q * (w.abs() >= self.ternary_delta).to(w.dtype)
        if self.fan_in is not None:
            q = q * self.mask
        # straight-through: value of q, gradient of w
        return w + (q - w).detach()

    @torch.no_grad()
    def prune_to_fan_in_(self) -> None:
        """Fix the mask to the ``fan_in`` largest ``|w|`` of each neuron (magnitude pruning)."""
        if self.fan_in is None:
            raise ValueError("prune_to_fan_in_ needs a layer built with fan_in.")
        keep = self.weight.abs().topk(self.fan_in, dim=1).indices
        self.mask.zero_().scatter_(1, keep, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.quantized_weight().t()

    def clip_(self) -> None:
        """Keep latent weights in [-1, 1], where the STE gradient is defined."""
        with torch.no_grad():
            self.weight.clamp_(-1, 1)


class BNN(nn.Module):
    """A binarised MLP: ``n_inputs`` bits -> hidden sign layers -> ``n_classes`` integer scores.

    Parameters
    ----------
    n_inputs : int
        Number of input bits (after :class:`InputBinarizer`).
    hidden : tuple of int
        Widths of the hidden ``sign(BN(A x))`` blocks.
    n_classes : int
        Number of scores (labels).
    ternary_delta : float or None
        See :class:`BinaryLinear`; applies to every layer.
    fan_in : int or None
        See :class:`BinaryLinear`; applies to the hidden layers (not the scoring head).
        :func:`train_bnn` trains densely for a part of the epochs, then prunes and fine-tunes.
    blocks : str or None
        A block layout of the first layer (:func:`~netinvert.bnn.list_block_layouts`): each of its
        neurons reads one region of the (square) image only, through a fixed mask that training keeps,
        so that :func:`~netinvert.bnn.count_labels_factored` counts the blocks one by one. Excludes
        ``fan_in`` (both set the first layer's mask).

    Notes
    -----
    ``forward`` takes bits ``(N, n_inputs)`` as bool or {0, 1} and returns the integer scores as
    float32 (exact: sums of at most 2^24 terms of +-1). ``logits`` scales them by a learned positive
    temperature for the cross-entropy loss; the scale does not change the argmax, so the network the
    SAT encoding sees is exactly ``argmax(forward(bits))``.
    """

    def __init__(self, n_inputs: int, hidden: tuple[int, ...] = (32,), n_classes: int = 10, *,
                 ternary_delta: float | None = None, fan_in: int | None = None, blocks: str | None = None) -> None:
        super().__init__()
        self.n_inputs = int(n_inputs)
        self.hidden = tuple(int(h) for h in hidden)
        self.n_classes = int(n_classes)
        self.ternary_delta = ternary_delta
        if fan_in is not None and (isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in < 1):
            raise ValueError(f"The 'fan_in' parameter of BNN must be an int in [1, inf) or None. Got {fan_in!r} instead.")
        if blocks is not None and (fan_in is not None or not self.hidden):
            raise ValueError(f"The 'blocks' parameter of BNN needs a hidden layer and no 'fan_in' (both set the first "
                             f"layer's mask). Got blocks={blocks!r}, fan_in={fan_in!r}, hidden={list(self.hidden)} instead.")
        mask = None if blocks is None else block_mask(blocks, self.n_inputs, self.hidden[0])
        self.fan_in = fan_in
        self.blocks = blocks
        sizes = (self.n_inputs, *self.hidden)
        fan_ins = [None if fan_in is None else min(fan_in, a) for a in sizes[:-1]]
        if mask is not None:  # a mask buffer over every input, fixed to the layout (train_bnn prunes only with fan_in)
            fan_ins[0] = self.n_inputs
        self.linears = nn.ModuleList(
            BinaryLinear(a, b, ternary_delta=ternary_delta, fan_in=f) for a, b, f in zip(sizes[:-1], sizes[1:], fan_ins)
        )
        if mask is not None:
            self.linears[0].mask.copy_(mask)
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in self.hidden)
        self.head = BinaryLinear(sizes[-1], self.n_classes, ternary_delta=ternary_delta)
        self.log_scale = nn.Parameter(torch.tensor(-0.5 * math.log(max(sizes[-1], 1))))

    def get_params(self) -> dict[str, Any]:
        return {"n_inputs": self.n_inputs, "hidden": list(self.hidden), "n_classes": self.n_classes,
                "ternary_delta": self.ternary_delta, "fan_in": self.fan_in, "blocks": self.blocks}

    def hidden_activations(self, bits: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden layer's output in {-1, +1}, in order."""
        h = 2 * bits.float() - 1
        out = []
        for lin, bn in zip(self.linears, self.norms):
            h = _SignSTE.apply(bn(lin(h)))
            out.append(h)
        return out

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        h = self.hidden_activations(bits)
        last = h[-1] if h else 2 * bits.float() - 1
        return self.head(last)

    def logits(self, bits: torch.Tensor) -> torch.Tensor:
        return self.forward(bits) * self.log_scale.exp()

    @torch.no_grad()
    def predict(self, bits: torch.Tensor) -> torch.Tensor:
        """Labels by ``torch.argmax`` (ties: lowest index) in eval mode."""
        was = self.training
        self.eval()
        try:
            return self.forward(bits).argmax(1)
        finally:
            self.train(was)

    def sparsity(self) -> float:
        """Fraction of zero weights over all layers (0 for binary nets)."""
        with torch.no_grad():
            qs = [m.quantized_weight() for m in (*self.linears, self.head)]
            return float(sum((q == 0).sum() for q in qs) / sum(q.numel() for q in qs))


@dataclass(frozen=True)
class BNNTrainConfig:
    """Training hyper-parameters (Adam on latent weights, cross-entropy on scaled scores)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-2
    seed: int = 0
    sparsity_weight: float = 0.0
    #: with ``fan_in``: share of the epochs trained densely before the weights are pruned
    prune_at: float = 1 / 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_bnn(model: BNN, bits: torch.Tensor, labels: torch.Tensor, config: BNNTrainConfig, *,
              class_weight: torch.Tensor | None = None, resume: bool = False) -> list[dict[str, float]]:
    """Train ``model`` in place on ``(bits, labels)``; returns per-epoch loss/accuracy history.

    ``sparsity_weight`` adds an L1 penalty on the latent weights, which pushes them into the
    ternary dead zone (only meaningful with ``ternary_delta``). A model with ``fan_in`` trains
    densely for ``prune_at`` of the epochs, so that the latent weights say which inputs matter,
    then keeps the largest ``fan_in`` per neuron and trains on with a fresh optimiser.

    ``class_weight`` (one weight per class) weighs the cross-entropy, so that a class with few or
    many examples (the garbage class of :func:`~netinvert.bnn.train_with_garbage`) counts as much
    as the weights say. ``resume`` continues training a trained model: the fan-in mask it has is
    kept (no dense phase, no new pruning), so the pruned shape that exact counting needs survives.
    A ``BNN(blocks=...)`` first-layer mask is always kept (pruning follows the model's ``fan_in`` only).
    """
    if config.epochs < 1:
        raise ValueError(f"The 'epochs' parameter of BNNTrainConfig must be an int in [1, inf). Got {config.epochs} instead.")
    if not 0 <= config.prune_at < 1:
        raise ValueError(f"The 'prune_at' parameter of BNNTrainConfig must be a float in [0, 1). Got {config.prune_at} instead.")
    if class_weight is not None and tuple(class_weight.shape) != (model.n_classes,):
        raise ValueError(f"The 'class_weight' parameter of train_bnn must hold one weight per class ({model.n_classes}). "
                         f"Got shape {tuple(class_weight.shape)} instead.")
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    layers = [*model.linears, model.head]
    x, y = bits.float(), labels.long()
    history = []
    prune_epoch = int(config.prune_at * config.epochs) if model.fan_in is not None and not resume else None
    if prune_epoch is not None:
        for lin in model.linears:  # a second call starts dense again, as documented
            lin.mask.fill_(1.0)
        if prune_epoch == 0 and config.prune_at > 0:
            logger.warning("prune_at=%s of %d epochs is less than one dense epoch: the fan-in mask is chosen from the "
                           "initial random weights.", config.prune_at, config.epochs)
    for epoch in range(config.epochs):
        if epoch == prune_epoch:
            for lin in model.linears:
                lin.prune_to_fan_in_()
            opt = torch.optim.Adam(model.parameters(), lr=config.lr)  # Adam's moments belong to the dense weights
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs - epoch)
        model.train()
        perm = torch.randperm(len(x), generator=g)
        total, correct, n = 0.0, 0, 0
        for i in range(0, len(x), config.batch_size):
            idx = perm[i:i + config.batch_size]
            if len(idx) < 2:
                continue  # batch norm needs two samples
            out = model.logits(x[idx])
            loss = F.cross_entropy(out, y[idx], weight=class_weight)
            if config.sparsity_weight > 0:
                loss = loss + config.sparsity_weight * sum(m.weight.abs().mean() for m in layers)
            opt.zero_grad()
            loss.backward()
            opt.step()
            for m in layers:
                m.clip_()
            total += loss.item() * len(idx)
            correct += int((out.argmax(1) == y[idx]).sum())
            n += len(idx)
        sched.step()
        history.append({"epoch": epoch + 1, "loss": total / max(n, 1), "train_accuracy": correct / max(n, 1)})
        logger.info("epoch %d loss %.4f acc %.4f", epoch + 1, history[-1]["loss"], history[-1]["train_accuracy"])
    model.eval()
    return history


def bnn_accuracy(model: BNN, bits: torch.Tensor, labels: torch.Tensor) -> float:
    """Test accuracy of ``argmax`` of the integer scores, in eval mode."""
    return float((model.predict(bits) == labels).float().mean())
