"""Named, weighted loss terms for generator inversion, composable with ``+``, ``-``, ``*`` and ``/``.

A loss is a small factory registered by name (``kl``, ``ce``, ``cosine``, ``ortho``, ``tv``,
``range``, ``l2``, ``jitter``, ``bn``, ``image_stats``, ``mode_seeking``, and TLDR's ``kl_perturbed``,
``ce_perturbed`` and ``grad_norm``). It returns a :class:`LossTerm` that maps a
:class:`LossContext` (the generated batch, the classifier's logits and features, the
conditioning) to a scalar. Terms compose like Lucent objectives::

    objective = 10 * make_loss("ce") + 10 * make_loss("cosine") + 0.5 * make_loss("bn")

and an :class:`Objective` reports each term's (unweighted) value next to the total, which is
what the progress bar and the loss-curve plot show.

The seed losses are those of Network Inversion (arXiv 2407.18002, 2411.17777): KL(P || Q), CE,
cosine similarity and orthogonality of classifier features. The priors that make samples look
natural come from activation maximisation and DeepInversion (arXiv 1912.08795): total
variation, pixel range, L2, robustness to jitter and noise, and batch-norm statistics matching.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import Registry
from ._conditioning import ConditionBatch

__all__ = [
    "LossContext",
    "LossTerm",
    "Objective",
    "LOSSES",
    "register_loss",
    "make_loss",
    "list_losses",
    "as_loss",
    "make_objective",
    "capture_bn_stats",
]


@dataclass
class LossContext:
    """Everything a loss term may look at for one generated batch.

    Attributes
    ----------
    x : Tensor ``(N, C, H, W)``
        Generated images in [0, 1].
    logits : Tensor ``(N, n_classes)``
        The frozen classifier's logits of ``x``.
    features : Tensor ``(N, D)``
        The classifier's penultimate features of ``x``.
    cond : ConditionBatch
        Labels, target distribution ``P`` and what the generator saw.
    classifier : nn.Module
        The frozen classifier (terms that re-evaluate perturbed inputs call it).
    bn_stats : list of (batch_mean, batch_var, running_mean, running_var)
        Input statistics of the classifier's batch-norm layers during the forward of ``x``,
        filled by :func:`capture_bn_stats` (empty when no term needs them).
    generator : torch.Generator or None
        Source of randomness for stochastic terms (jitter), so runs are reproducible.
    pair : tuple of four Tensors or None
        ``(x_a, x_b, z_a, z_b)``: two images generated with the same conditioning from the
        latents ``z_a`` and ``z_b`` (filled only when a term such as ``mode_seeking`` asks).
    """

    x: torch.Tensor
    logits: torch.Tensor
    features: torch.Tensor
    cond: ConditionBatch
    classifier: nn.Module
    bn_stats: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    generator: torch.Generator | None = None
    pair: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def labels(self) -> torch.Tensor:
        return self.cond.labels

    @property
    def target(self) -> torch.Tensor:
        return self.cond.target


class _Composable:
    """Arithmetic shared by terms and objectives; any operand but a term or a number is a TypeError."""

    def parts(self) -> list[tuple[float, LossTerm]]:
        raise NotImplementedError

    def __add__(self, other: object) -> Objective:
        if not isinstance(other, _Composable):
            return NotImplemented
        return Objective(self.parts() + other.parts())

    def __sub__(self, other: object) -> Objective:
        if not isinstance(other, _Composable):
            return NotImplemented
        return Objective(self.parts() + [(-w, t) for w, t in other.parts()])

    def __mul__(self, scale: object) -> Objective:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            return NotImplemented
        return Objective([(w * float(scale), t) for w, t in self.parts()])

    __rmul__ = __mul__

    def __truediv__(self, scale: object) -> Objective:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            return NotImplemented
        return self * (1.0 / float(scale))

    def __neg__(self) -> Objective:
        return self * -1.0

    @property
    def needs_bn_stats(self) -> bool:
        """Whether any term reads batch-norm statistics (so the inverter installs hooks)."""
        return any(t.reads_bn_stats for _, t in self.parts())

    @property
    def needs_pair(self) -> bool:
        """Whether any term reads ``ctx.pair`` (so the inverter generates a second image per condition)."""
        return any(t.reads_pair for _, t in self.parts())

    def __call__(self, ctx: LossContext) -> torch.Tensor:
        return self.evaluate(ctx)[0]

    def evaluate(self, ctx: LossContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted total and each term's unweighted value (keys made unique by ``#2``...)."""
        total = torch.zeros((), device=ctx.x.device)
        values: dict[str, torch.Tensor] = {}
        for key, (weight, term) in zip(self.keys(), self.parts()):
            values[key] = term.fn(ctx)
            total = total + weight * values[key]
        return total, values

    def keys(self) -> list[str]:
        """One name per term, in order: the term's name, ``name#2``, ``name#3``... for repeats."""
        keys: list[str] = []
        for _, term in self.parts():
            key, k = term.name, 2
            while key in keys:
                key, k = f"{term.name}#{k}", k + 1
            keys.append(key)
        return keys

    def spec(self) -> list[dict[str, Any]]:
        """Plain-JSON description (name, weight, parameters) of each term, for run cards."""
        return [{"name": t.name, "weight": w, "params": dict(t.params), "registered": t.registered} for w, t in self.parts()]


class LossTerm(_Composable):
    """One named loss term with weight 1.

    Parameters
    ----------
    name : str
    fn : callable ``(LossContext) -> scalar Tensor``
    description : str
    params : dict
        The factory arguments (stored in run cards so the term can be rebuilt).
    needs_bn_stats : bool
        Whether ``fn`` reads ``ctx.bn_stats``.
    needs_pair : bool
        Whether ``fn`` reads ``ctx.pair``.
    """

    def __init__(self, name: str, fn: Callable[[LossContext], torch.Tensor], description: str = "", *,
                 params: Mapping[str, Any] | None = None, needs_bn_stats: bool = False, needs_pair: bool = False) -> None:
        self.name = str(name)
        self.fn = fn
        self.description = description
        self.params = dict(params or {})
        self.reads_bn_stats = bool(needs_bn_stats)
        self.reads_pair = bool(needs_pair)
        self.registered = False  # set by make_loss: only registry-built terms can be rebuilt from a card

    def parts(self) -> list[tuple[float, LossTerm]]:
        return [(1.0, self)]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"LossTerm({self.name}{', ' + args if args else ''})"


class Objective(_Composable):
    """A weighted sum of :class:`LossTerm` objects (what ``+`` and ``*`` build)."""

    def __init__(self, parts: Sequence[tuple[float, LossTerm]]) -> None:
        self._parts = [(float(w), t) for w, t in parts]

    def parts(self) -> list[tuple[float, LossTerm]]:
        return list(self._parts)

    @property
    def weights(self) -> dict[str, float]:
        """Weight of each term, keyed as :meth:`evaluate` keys its values (:meth:`keys`)."""
        return {key: w for key, (w, _) in zip(self.keys(), self._parts)}

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{t!r}" for w, t in self._parts) or "Objective([])"


LossFactory = Callable[..., LossTerm]
LOSSES: Registry[LossFactory] = Registry("loss")


def register_loss(name: str) -> Callable[[LossFactory], LossFactory]:
    """Register a factory ``fn(**params) -> LossTerm`` under ``name``."""
    return LOSSES.register(name)


def make_loss(name: str, **params: Any) -> LossTerm:
    """Build a registered loss term, e.g. ``make_loss("cosine", scope="batch")``."""
    term = LOSSES.get(name)(**params)
    term.registered = True
    return term


def list_losses() -> list[str]:
    return LOSSES.names()


def _pairwise_mean(sim: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    n = mask.sum()
    return (sim * mask).sum() / n if n > 0 else sim.sum() * 0.0


@register_loss("kl")
def kl() -> LossTerm:
    """``KL(P || Q) = sum_i P_i log(P_i / Q_i)``, averaged over the batch.

    ``P`` is the conditioning's target distribution, ``Q = softmax(logits)``. With the papers'
    soft vector it pulls the whole output distribution towards ``P``, which caps confidence when
    ``P`` is flat (arXiv 2407.18002). With a one-hot ``P`` (``label`` conditioning, as in TLDR) it is
    ``-log Q_y``, the very value of :func:`ce`: together the two weigh that one term twice.
    """
    def fn(ctx: LossContext) -> torch.Tensor:
        return F.kl_div(F.log_softmax(ctx.logits, 1), ctx.target, reduction="batchmean")

    return LossTerm("kl", fn, "KL(P || Q) between conditioning and classifier output")


@register_loss("ce")
def ce(cap: float | None = None) -> LossTerm:
    """Cross-entropy ``-log Q_y`` of the classifier's output against the hidden label ``y = argmax P``.

    Parameters
    ----------
    cap : float in (0, 1), optional
        Stop pushing a sample once its confidence ``Q_y`` reaches ``cap``: the term becomes
        ``mean_i max(0, -log Q_y,i + log cap)``. Uncapped CE keeps pulling every sample towards
        the single most confident input of its class long after it is valid, which is what
        collapses a class to one template over training; real images sit below certainty.
    """
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap < 1):
        raise ValueError(f"The 'cap' parameter of ce must be a float in (0, 1) or None. Got {cap!r} instead.")

    def fn(ctx: LossContext) -> torch.Tensor:
        if cap is None:
            return F.cross_entropy(ctx.logits, ctx.labels)
        per_sample = F.cross_entropy(ctx.logits, ctx.labels, reduction="none")
        return F.relu(per_sample + math.log(cap)).mean()

    return LossTerm("ce", fn, "cross-entropy to the conditioned label", params={"cap": cap})


_COSINE_SCOPES = ("class", "batch")
_COSINE_SPACES = ("features", "pixels")


def _rows(ctx: LossContext, space: str, centred: bool) -> torch.Tensor:
    """Row-normalised ``(N, D)`` vectors of the batch in ``space``, centred on the batch mean if asked."""
    v = (ctx.features if space == "features" else ctx.x).flatten(1)
    if centred:
        v = v - v.mean(0, keepdim=True)
    return F.normalize(v, dim=1)


@register_loss("cosine")
def cosine(scope: str = "class", centred: bool = False, space: str = "features", margin: float | None = None) -> LossTerm:
    """``1/|pairs| sum_{i != j} cos(F_i, F_j)`` over classifier features (lower = more diverse).

    Parameters
    ----------
    scope : {"class", "batch"}, default="class"
        ``class`` compares only samples of the same label (diversity within a class, what the
        user checks); ``batch`` compares all pairs as in the papers' formula.
    centred : bool, default=False
        Subtract the batch mean first (the batch holds every class, so its mean stands in for
        the data's). Uncentred ReLU features all share a positive direction, so their cosine
        cannot fall much below 0.5 and the term mostly pushes on that shared part.
    space : {"features", "pixels"}, default="features"
        Compare the classifier's penultimate features (the papers' term) or the images
        themselves (variety a person sees: pose, width, shading).
    margin : float in [-1, 1), optional
        Penalise only pairs more similar than ``margin``: ``mean max(0, cos - margin)``. The plain
        mean keeps pushing samples apart for as long as training runs, so the variety it buys
        grows with the number of steps (and overshoots real data's); with a margin the term
        goes quiet once no two samples of a class are near-duplicates.
    """
    if scope not in _COSINE_SCOPES:
        raise ValueError(f"The 'scope' parameter of cosine must be one of {_COSINE_SCOPES}. Got {scope!r} instead.")
    if space not in _COSINE_SPACES:
        raise ValueError(f"The 'space' parameter of cosine must be one of {_COSINE_SPACES}. Got {space!r} instead.")
    if not isinstance(centred, bool):
        raise ValueError(f"The 'centred' parameter of cosine must be a bool. Got {centred!r} instead.")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float)) or not -1 <= margin < 1):
        raise ValueError(f"The 'margin' parameter of cosine must be a float in [-1, 1) or None. Got {margin!r} instead.")

    def fn(ctx: LossContext) -> torch.Tensor:
        f = _rows(ctx, space, centred)
        sim = f @ f.T
        if margin is not None:
            sim = F.relu(sim - float(margin))
        n = len(f)
        mask = ~torch.eye(n, dtype=torch.bool, device=f.device)
        if scope == "class":
            mask &= ctx.labels[:, None] == ctx.labels[None, :]
        return _pairwise_mean(sim, mask.float())

    return LossTerm("cosine", fn, f"mean pairwise cosine similarity of {space} ({scope})",
                    params={"scope": scope, "centred": centred, "space": space, "margin": margin})


@register_loss("ortho")
def ortho(centred: bool = False) -> LossTerm:
    """``mean((F_n F_n^T - I)^2)`` with ``F_n`` the row-normalised features ``(N, D)``.

    ``centred`` subtracts the batch mean before normalising (see :func:`cosine`): non-negative
    features can never be orthogonal, centred ones can.
    """
    if not isinstance(centred, bool):
        raise ValueError(f"The 'centred' parameter of ortho must be a bool. Got {centred!r} instead.")

    def fn(ctx: LossContext) -> torch.Tensor:
        f = _rows(ctx, "features", centred)
        eye = torch.eye(len(f), device=f.device)
        return ((f @ f.T - eye) ** 2).mean()

    return LossTerm("ortho", fn, "feature Gram matrix close to identity", params={"centred": centred})


@register_loss("tv")
def tv(p: int = 1) -> LossTerm:
    """Total variation: mean ``|x[h+1,w] - x[h,w]|^p`` plus mean ``|x[h,w+1] - x[h,w]|^p``.

    Penalises high-frequency patterns (the fooling textures) and favours piecewise-smooth
    images. ``p`` is 1 (edges survive) or 2 (smoother).
    """
    if p not in (1, 2):
        raise ValueError(f"The 'p' parameter of tv must be 1 or 2. Got {p!r} instead.")

    def fn(ctx: LossContext) -> torch.Tensor:
        x = ctx.x
        dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs() ** p
        dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs() ** p
        return dh.mean() + dw.mean()

    return LossTerm("tv", fn, f"total variation (L{p})", params={"p": p})


@register_loss("range")
def pixel_range(low: float = 0.0, high: float = 1.0) -> LossTerm:
    """``mean(relu(low - x)^2 + relu(x - high)^2)``: penalty outside the valid pixel range.

    The built-in generators end in a sigmoid, so this is zero for them; it matters for
    generators without a bounded output and for per-sample pixel optimisation.
    """
    def fn(ctx: LossContext) -> torch.Tensor:
        return (F.relu(low - ctx.x) ** 2 + F.relu(ctx.x - high) ** 2).mean()

    return LossTerm("range", fn, f"pixels outside [{low}, {high}]", params={"low": low, "high": high})


@register_loss("l2")
def l2() -> LossTerm:
    """``mean(x^2)``: favours dark backgrounds and little ink (an activation-maximisation prior)."""
    def fn(ctx: LossContext) -> torch.Tensor:
        return (ctx.x**2).mean()

    return LossTerm("l2", fn, "mean squared pixel value")


@register_loss("jitter")
def jitter(shift: int = 1, noise: float = 0.05) -> LossTerm:
    """Cross-entropy to the label after a random shift (up to ``shift`` pixels) and Gaussian noise.

    A real digit is still that digit when moved by a pixel; a fooling texture whose label rests
    on exact pixel positions is not. The same random roll applies to the whole batch (as in
    DeepInversion); ``noise`` is the standard deviation in [0, 1] pixel units.
    """
    if int(shift) < 0:
        raise ValueError(f"The 'shift' parameter of jitter must be an int in [0, inf). Got {shift} instead.")
    if not (float(noise) >= 0):
        raise ValueError(f"The 'noise' parameter of jitter must be a float in [0, inf). Got {noise} instead.")

    def fn(ctx: LossContext) -> torch.Tensor:
        g = ctx.generator
        dy, dx = (torch.randint(-shift, shift + 1, (2,), generator=g).tolist() if shift else (0, 0))
        x = torch.roll(ctx.x, shifts=(dy, dx), dims=(2, 3))
        if noise:
            x = (x + noise * torch.randn(x.shape, generator=g).to(x.device)).clamp(0, 1)
        return F.cross_entropy(ctx.classifier(x), ctx.labels)

    return LossTerm("jitter", fn, "cross-entropy under random shift and noise", params={"shift": int(shift), "noise": float(noise)})


def _perturb(x: torch.Tensor, noise: float, drop: float, g: torch.Generator | None) -> torch.Tensor:
    """``x`` with Gaussian noise (std ``noise``) and a share ``drop`` of its pixels set to 0, clamped to [0, 1]."""
    if noise:
        x = x + noise * torch.randn(x.shape, generator=g).to(x.device)
    if drop:
        x = x * (torch.rand(x.shape, generator=g) >= drop).to(x.device, x.dtype)
    return x.clamp(0, 1)


def _check_perturbation(owner: str, noise: float, drop: float) -> None:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < math.inf:
        raise ValueError(f"The 'noise' parameter of {owner} must be a float in [0, inf). Got {noise!r} instead.")
    if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop < 1:
        raise ValueError(f"The 'drop' parameter of {owner} must be a float in [0, 1). Got {drop!r} instead.")


@register_loss("kl_perturbed")
def kl_perturbed(noise: float = 0.1, drop: float = 0.1) -> LossTerm:
    """``KL(P || Q)`` of the sample after Gaussian noise and pixel dropout (TLDR, arXiv 2410.16884).

    Training images sit in flat regions of the classifier's output: their label survives small
    perturbations, while a fooling pattern's does not. ``noise`` is the noise's standard
    deviation in [0, 1] pixel units, ``drop`` the share of pixels zeroed.
    """
    _check_perturbation("kl_perturbed", noise, drop)

    def fn(ctx: LossContext) -> torch.Tensor:
        logits = ctx.classifier(_perturb(ctx.x, noise, drop, ctx.generator))
        return F.kl_div(F.log_softmax(logits, 1), ctx.target, reduction="batchmean")

    return LossTerm("kl_perturbed", fn, "KL(P || Q) under noise and pixel dropout",
                    params={"noise": float(noise), "drop": float(drop)})


@register_loss("ce_perturbed")
def ce_perturbed(noise: float = 0.1, drop: float = 0.1) -> LossTerm:
    """Cross-entropy to the label after Gaussian noise and pixel dropout (TLDR): see :func:`kl_perturbed`."""
    _check_perturbation("ce_perturbed", noise, drop)

    def fn(ctx: LossContext) -> torch.Tensor:
        return F.cross_entropy(ctx.classifier(_perturb(ctx.x, noise, drop, ctx.generator)), ctx.labels)

    return LossTerm("ce_perturbed", fn, "cross-entropy under noise and pixel dropout",
                    params={"noise": float(noise), "drop": float(drop)})


def _last_layer_prefix(model: nn.Module) -> str:
    """The name of the last module that holds parameters of its own (the classifier's head)."""
    names = [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    if not names:
        raise ValueError(f"{type(model).__name__} has no parameters: there is no weight gradient to measure.")
    return names[-1]


def per_sample_grad_norm(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, layers: str = "head") -> torch.Tensor:
    """``||d CE(f(x_i), y_i) / d theta||^2`` for each sample ``(N,)``, differentiable in ``x``.

    ``theta`` is the head's parameters (``layers="head"``) or all of them (``"all"``). Per-sample
    gradients come from ``torch.func.vmap(torch.func.grad(...))`` in one batched call, not a Python
    loop; the model is evaluated as it is (put it in eval mode: batch norm must not mix samples).
    """
    from torch.func import functional_call, grad, vmap

    if layers not in ("head", "all"):
        raise ValueError(f"The 'layers' parameter of grad_norm must be 'head' or 'all'. Got {layers!r} instead.")
    prefix = _last_layer_prefix(model) + "." if layers == "head" else ""
    params = {k: v.detach() for k, v in model.named_parameters()}
    chosen = {k: v for k, v in params.items() if k.startswith(prefix)}
    fixed = {**{k: v for k, v in params.items() if k not in chosen}, **dict(model.named_buffers())}

    def loss_one(theta: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**fixed, **theta}, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(chosen, x, labels)
    return sum(g.pow(2).flatten(1).sum(1) for g in grads.values())


@register_loss("grad_norm")
def grad_norm(layers: str = "head") -> LossTerm:
    """Mean per-sample squared norm of the classifier's weight gradient at the sample (TLDR).

    A model trained to (near) zero loss has (near) zero loss gradient at its training images: they
    sit where this gradient is small, so pushing samples there pulls them towards training-like
    inputs. ``layers``: ``"head"`` (the last layer's weights, cheap) or ``"all"``.
    """
    if layers not in ("head", "all"):
        raise ValueError(f"The 'layers' parameter of grad_norm must be 'head' or 'all'. Got {layers!r} instead.")

    def fn(ctx: LossContext) -> torch.Tensor:
        return per_sample_grad_norm(ctx.classifier, ctx.x, ctx.labels, layers).mean()

    return LossTerm("grad_norm", fn, "squared norm of the per-sample weight gradient", params={"layers": layers})


@register_loss("bn")
def bn(first: float = 1.0) -> LossTerm:
    """DeepInversion's prior: ``sum_l a_l (||mu_l(x) - mu_l||_2 + ||var_l(x) - var_l||_2)``.

    ``mu_l(x)``, ``var_l(x)`` are the batch statistics of the input of the classifier's ``l``-th
    batch-norm layer for the generated batch; ``mu_l``, ``var_l`` its running statistics from
    training (arXiv 1912.08795). Generated batches are pushed to excite the network the way real
    data did. Needs a classifier with batch norm.

    Parameters
    ----------
    first : float, default=1
        Weight ``a_1`` of the first batch-norm layer (the others weigh 1). The first layer's
        statistics describe edges and strokes; DeepInversion's released settings weigh it 10x.
    """
    if isinstance(first, bool) or not isinstance(first, (int, float)) or not 0 <= first < math.inf:
        raise ValueError(f"The 'first' parameter of bn must be a float in [0, inf). Got {first!r} instead.")

    def fn(ctx: LossContext) -> torch.Tensor:
        if not ctx.bn_stats:
            raise ValueError("The 'bn' loss needs a classifier with BatchNorm layers; remove 'bn' from the losses.")
        total = torch.zeros((), device=ctx.x.device)
        for i, (mean, var, run_mean, run_var) in enumerate(ctx.bn_stats):
            gap = torch.linalg.vector_norm(mean - run_mean) + torch.linalg.vector_norm(var - run_var)
            total = total + (float(first) if i == 0 else 1.0) * gap
        return total

    return LossTerm("bn", fn, "batch-norm statistics matching (DeepInversion)", params={"first": float(first)}, needs_bn_stats=True)


@register_loss("image_stats")
def image_stats(mean: float | None = None, std: float | None = None) -> LossTerm:
    """``mean_c((mean_c(x) - m_c)^2 + (std_c(x) - s_c)^2)``: the batch's pixel statistics match the data's.

    ``mean_c(x)`` and ``std_c(x)`` are the mean and (population) standard deviation of channel
    ``c`` over the whole generated batch; ``m_c``, ``s_c`` the training images' statistics. By
    default they come from the classifier's input normalisation (``classifier.mean`` and
    ``classifier.std``, which netinvert classifiers carry), so the prior needs no data. It keeps
    a batch from drifting to saturated white blobs or all-dark frames, which the batch-norm prior
    alone allows on Fashion-MNIST.

    Parameters
    ----------
    mean, std : float, optional
        Override the statistics (one value for every channel).
    """
    for name, value in (("mean", mean), ("std", std)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ValueError(f"The '{name}' parameter of image_stats must be a finite float or None. Got {value!r} instead.")

    def reference(ctx: LossContext, name: str, value: float | None) -> torch.Tensor:
        c = ctx.x.shape[1]
        if value is not None:
            return torch.full((c,), float(value), device=ctx.x.device)
        ref = getattr(ctx.classifier, name, None)
        if not isinstance(ref, torch.Tensor):
            raise ValueError(f"The 'image_stats' loss needs the data's pixel {name}: the classifier has no '{name}' "
                             f"buffer, so pass it, e.g. 'image_stats:1:mean=0.29,std=0.35'.")
        return ref.detach().reshape(-1).to(ctx.x.device).expand(c)

    def fn(ctx: LossContext) -> torch.Tensor:
        x = ctx.x.transpose(0, 1).flatten(1)  # (C, N*H*W)
        gap_mean = x.mean(1) - reference(ctx, "mean", mean)
        gap_std = x.std(1, unbiased=False) - reference(ctx, "std", std)
        return (gap_mean**2 + gap_std**2).mean()

    return LossTerm("image_stats", fn, "batch pixel mean and std match the data's", params={"mean": mean, "std": std})


@register_loss("mode_seeking")
def mode_seeking(eps: float = 1e-5) -> LossTerm:
    """``mean_i 1 / (d_x(i) / d_z(i) + eps)``: two latents of one condition must give different images.

    ``d_x(i) = mean|x_a,i - x_b,i|`` over pixels and ``d_z(i) = mean|z_a,i - z_b,i|`` over the
    latent, for pairs generated with the same conditioning (``ctx.pair``; the inverter generates
    the second image of each pair when this term is present, at the cost of half a batch more
    generator work). The term falls as samples of a class move apart, which counters the
    collapse to one template per class that the classifier-driven terms cause (Mode Seeking
    GAN, arXiv 1903.05628).
    """
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"The 'eps' parameter of mode_seeking must be a float in (0, inf). Got {eps!r} instead.")

    def fn(ctx: LossContext) -> torch.Tensor:
        if ctx.pair is None:
            raise ValueError("The 'mode_seeking' loss needs pairs of images of one condition (LossContext.pair); "
                             "the Inverter provides them.")
        xa, xb, za, zb = ctx.pair
        ratio = (xa - xb).abs().flatten(1).mean(1) / (za - zb).abs().flatten(1).mean(1)
        return (1.0 / (ratio + eps)).mean()

    return LossTerm("mode_seeking", fn, "inverse image/latent distance ratio of same-condition pairs",
                    params={"eps": float(eps)}, needs_pair=True)


def bn_layers(model: nn.Module) -> list[nn.Module]:
    """The batch-norm layers of ``model`` that hold running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]


@contextmanager
def capture_bn_stats(model: nn.Module) -> Iterator[list[tuple[torch.Tensor, ...]]]:
    """Record, during the ``with`` block, the input statistics of each batch-norm layer of ``model``.

    Yields a list that fills with ``(batch_mean, batch_var, running_mean, running_var)`` per
    layer call. The hooks are removed when the block ends, even on error, so the classifier is
    left exactly as it was.

    The variance is ``E[x^2] - E[x]^2`` (population), the same quantity as ``x.var(unbiased=False)``: on a
    CPU, ``var`` over the batch and spatial axes of an ``(N, C, H, W)`` tensor is a strided single-pass
    reduction that cost 7% of a Fashion-MNIST inversion step, while two plain means are vectorised (3-10x
    faster, forward and backward). Batch-norm inputs are conv or linear outputs whose mean is not large
    against their spread, so the cancellation this form risks stays at float32 rounding (about 1e-7 here).
    """
    stats: list[tuple[torch.Tensor, ...]] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dims)
        var = (x.square().mean(dims) - mean.square()).clamp_min(0.0)
        stats.append((mean, var, module.running_mean, module.running_var))

    handles = [m.register_forward_pre_hook(hook) for m in bn_layers(model)]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def as_loss(spec: str | Callable[[LossContext], torch.Tensor] | _Composable) -> _Composable:
    """Normalise a loss given as ``"name"``, ``"name:weight"``, ``"name:weight:key=value,..."``, a callable or a term.

    Examples: ``"ce:10"``, ``"cosine:10:scope=batch"``, ``"jitter:1:shift=2,noise=0.1"``. A plain
    callable ``fn(ctx) -> scalar`` becomes a term named after the function.
    """
    if isinstance(spec, _Composable):
        return spec
    if isinstance(spec, str):
        name, _, rest = spec.partition(":")
        weight_text, _, param_text = rest.partition(":")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise ValueError(f"A loss spec must look like 'name:weight[:key=value,...]'. Got {spec!r} instead.") from None
        if not math.isfinite(weight):
            raise ValueError(f"The weight of loss {name!r} must be finite. Got {weight_text!r} instead.")
        params = {}
        for item in filter(None, param_text.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"Loss parameters must be key=value pairs. Got {item!r} in {spec!r} instead.")
            params[key.strip()] = _parse_value(value.strip())
        return weight * make_loss(name.strip(), **params)
    if callable(spec):
        return LossTerm(getattr(spec, "__name__", "custom"), spec, "user-defined term")
    raise TypeError(f"A loss must be a 'name:weight' string, a callable or a LossTerm. Got {type(spec).__name__} instead.")


def make_objective(losses: str | Mapping[str, float] | Sequence[Any] | _Composable) -> Objective:
    """Build an :class:`Objective` from a spec string (space separated), a ``{name: weight}`` dict, a list or a term.

    List items may be anything :func:`as_loss` takes, or ``{"name", "weight", "params"}`` dicts
    as written by :meth:`Objective.spec` (so a run card rebuilds its objective).
    """
    if isinstance(losses, _Composable):
        return Objective(losses.parts())
    if isinstance(losses, str):
        losses = losses.split()
    elif isinstance(losses, Mapping):
        losses = [float(w) * make_loss(n) for n, w in losses.items()]
    parts: list[tuple[float, LossTerm]] = []
    for item in losses:
        if isinstance(item, Mapping):  # an entry of Objective.spec(), as stored in run cards
            item = float(item.get("weight", 1.0)) * make_loss(item["name"], **item.get("params", {}))
        parts += as_loss(item).parts()
    if not parts:
        raise ValueError("At least one loss term is needed; e.g. losses=['ce:1'].")
    return Objective(parts)
