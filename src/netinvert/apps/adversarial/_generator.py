"""The amortised attack: a generator ``G(x, c, z)`` that outputs a perturbation inside a norm ball.

Trained once against a frozen classifier, it replaces PGD's ``steps`` forward and backward passes per
example by one forward pass of a small network (AdvGAN, arXiv 1801.02610, without the discriminator:
the budget is enforced by construction, not by a loss). What it sees:

- ``x``, the image to attack (flattened);
- ``c``, the attack's goal in the project's conditioning (:mod:`netinvert.inversion._conditioning`):
  for a targeted attack the target hidden in a vector (``softmax(v / T)`` whose argmax is the target,
  ``vector``) or a one-hot (``label``), with a trailing 0; for an untargeted attack zeros with a
  trailing 1;
- ``z ~ N(0, I)`` and dropout, both active when sampling: one batch gives several distinct adversarial
  examples per input, and the mode-seeking term keeps them apart (arXiv 1903.05628).

Its raw output goes through the norm's :meth:`~netinvert.apps.adversarial.Norm.squash` (L-inf:
``eps * tanh(2 raw / rms(raw))``; L2: ``eps * raw / ||raw||``), so ``x + delta`` is in the ball by
construction, then clamped to [0, 1]. The loss is Carlini-Wagner's margin clamped at ``-kappa``
(:func:`margin_loss`): untargeted, the true label's lead; targeted, the target's deficit.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from torch import nn

from ..._device import resolve_device, seed_everything
from ..._progress import progress_bar
from ...exceptions import NotFittedError, TrainingDivergedError
from ...inversion import make_conditioning
from ._attacks import Norm, check_eps, make_norm, margin_loss

__all__ = ["PerturbationNet", "AdversarialGenerator", "GENERATOR_CONDITIONINGS"]

log = logging.getLogger(__name__)

#: Conditionings the generator can read: those that give it a vector (the matrix ones feed conv layers).
GENERATOR_CONDITIONINGS = ("label", "vector")


class PerturbationNet(nn.Module):
    """An MLP ``(x, code, z) -> raw perturbation`` of the shape of ``x``: small, so one pass costs less than
    one forward pass of the classifier it attacks (what makes the attack fast)."""

    def __init__(self, input_shape: tuple[int, ...], code_dim: int, latent_dim: int, hidden: tuple[int, ...],
                 dropout: float) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        d = math.prod(self.input_shape)
        layers: list[nn.Module] = []
        width = d + code_dim + latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, d))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, code: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), code, z], 1)).view(len(x), *self.input_shape)


def _check_int(owner: str, name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"The '{name}' parameter of {owner} must be an int in [{low}, inf). Got {value!r} instead.")
    return value


def _check_float(owner: str, name: str, value: Any, low: float, high: float, *, closed_low: bool = True,
                 closed_high: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if closed_low else value > low) and (value <= high if closed_high else value < high)
    if not ok:
        lo, hi = "[" if closed_low else "(", "]" if closed_high else ")"
        raise ValueError(f"The '{name}' parameter of {owner} must be a float in {lo}{low:g}, {high:g}{hi}. Got {value!r} instead.")
    return float(value)


class AdversarialGenerator:
    """A perturbation generator trained against a frozen classifier: one forward pass per adversarial example.

    Parameters
    ----------
    classifier : nn.Module
        With ``input_shape`` ``(C, H, W)`` and ``n_classes``, mapping images in [0, 1] to logits.
        Frozen during :meth:`fit` (eval mode, no gradients to its weights) and restored afterwards.
    eps : float
        Budget radius in [0, 1] pixel units, in (0, the range's size in ``norm``].
    norm : {"linf", "l2"}, default="linf"
    targeted_fraction : float in [0, 1], default=0.5
        Share of each training batch given a target (drawn uniformly among the other labels); the rest
        train the untargeted goal. 0 gives an untargeted-only generator, 1 a targeted-only one.
    conditioning : {"vector", "label"}, default="vector"
        How the target is shown (:data:`GENERATOR_CONDITIONINGS`).
    hidden : tuple of int, default=(256, 256)
        Hidden widths of :class:`PerturbationNet`.
    latent_dim : int, default=16
        Size of ``z``.
    dropout : float in [0, 1), default=0.2
        Dropout after each hidden layer, active when sampling too.
    kappa : float, default=2.0
        The margin (logits) at which an example counts as done and stops pulling.
    diversity : float, default=0.1
        Weight of the mode-seeking term ``-||d1 - d2|| / (||d1|| + ||d2||)`` between two draws for the
        same image and goal.
    lr : float, default=1e-3
        Adam learning rate.
    batch_size : int, default=128
        Images per step (each drawn twice, with two ``z``).
    seed : int, default=0
    device : str or torch.device, optional
        Default: the classifier's.

    Attributes
    ----------
    generator_ : PerturbationNet
    history_ : dict of str to list of float
        Per step: ``step``, ``seconds``, ``loss``, ``margin``, ``diversity`` and ``success`` (share of
        the batch whose goal is met).
    """

    def __init__(self, classifier: nn.Module, *, eps: float, norm: str = "linf", targeted_fraction: float = 0.5,
                 conditioning: str = "vector", hidden: tuple[int, ...] = (256, 256), latent_dim: int = 16,
                 dropout: float = 0.2, kappa: float = 2.0, diversity: float = 0.1, lr: float = 1e-3,
                 batch_size: int = 128, seed: int = 0, device: str | torch.device | None = None) -> None:
        self.classifier = classifier
        self.eps = eps
        self.norm = norm
        self.targeted_fraction = targeted_fraction
        self.conditioning = conditioning
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.kappa = kappa
        self.diversity = diversity
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments but the classifier and device: what a card records to rebuild it."""
        return {"eps": self.eps, "norm": self.norm, "targeted_fraction": self.targeted_fraction,
                "conditioning": self.conditioning, "hidden": list(self.hidden), "latent_dim": self.latent_dim,
                "dropout": self.dropout, "kappa": self.kappa, "diversity": self.diversity, "lr": self.lr,
                "batch_size": self.batch_size, "seed": self.seed}

    def validate(self) -> AdversarialGenerator:
        """Raise ``ValueError`` on the first invalid parameter (before any work); returns ``self``."""
        owner = type(self).__name__
        norm = make_norm(self.norm)
        shape = getattr(self.classifier, "input_shape", None)
        if shape is None or getattr(self.classifier, "n_classes", None) is None:
            raise ValueError(f"The 'classifier' parameter of {owner} must have 'input_shape' and 'n_classes' "
                             "(a netinvert Classifier or load_classifier's wrapper).")
        check_eps(self.eps, norm, math.prod(shape), owner)
        _check_float(owner, "targeted_fraction", self.targeted_fraction, 0, 1)
        if self.conditioning not in GENERATOR_CONDITIONINGS:
            raise ValueError(f"The 'conditioning' parameter of {owner} must be one of {list(GENERATOR_CONDITIONINGS)}. "
                             f"Got {self.conditioning!r} instead.")
        hidden = self.hidden
        if not isinstance(hidden, (tuple, list)) or not hidden or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            raise ValueError(f"The 'hidden' parameter of {owner} must be a non-empty sequence of ints >= 1. "
                             f"Got {hidden!r} instead.")
        _check_int(owner, "latent_dim", self.latent_dim, 1)
        _check_int(owner, "batch_size", self.batch_size, 1)
        _check_int(owner, "seed", self.seed, 0)
        _check_float(owner, "dropout", self.dropout, 0, 1, closed_high=False)
        _check_float(owner, "kappa", self.kappa, 0, math.inf, closed_low=False, closed_high=False)
        _check_float(owner, "diversity", self.diversity, 0, math.inf, closed_high=False)
        _check_float(owner, "lr", self.lr, 0, math.inf, closed_low=False, closed_high=False)
        return self

    # ------------------------------------------------------------------ the network and its inputs
    @property
    def n_classes(self) -> int:
        return int(self.classifier.n_classes)

    def _norm(self) -> Norm:
        return make_norm(self.norm)

    def _build(self) -> PerturbationNet:
        return PerturbationNet(tuple(self.classifier.input_shape), self.n_classes + 1, self.latent_dim,
                               tuple(self.hidden), self.dropout)

    def _codes(self, target: torch.Tensor | None, n: int, device: torch.device,
               generator: torch.Generator | None) -> torch.Tensor:
        """The goal as the generator reads it: the target's conditioning code and a 0, or zeros and a 1 (untargeted)."""
        k = self.n_classes
        if target is None:
            return torch.cat([torch.zeros(n, k, device=device), torch.ones(n, 1, device=device)], 1)
        cond = make_conditioning(self.conditioning, k)
        code = cond(target.cpu(), generator).code.to(device)
        return torch.cat([code, torch.zeros(n, 1, device=device)], 1)

    def _delta(self, G: PerturbationNet, x: torch.Tensor, code: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        delta = self._norm().squash(G(x, code, z), float(self.eps))
        return (x + delta).clamp(0, 1) - x

    # ------------------------------------------------------------------ training
    def fit(self, x: torch.Tensor, y: torch.Tensor, *, steps: int | None = None, seconds: float | None = None,
            progress: bool = True) -> AdversarialGenerator:
        """Train on images ``x`` ``(N, C, H, W)`` in [0, 1] with labels ``y`` until ``steps`` or ``seconds`` end.

        Each step draws ``batch_size`` images (seeded), gives a ``targeted_fraction`` share of them a random
        other label as target, draws two ``z`` per image and minimises the mean clamped margin of both draws
        minus ``diversity`` times their mode-seeking distance. Returns ``self``.
        """
        self.validate()
        owner = type(self).__name__
        if steps is None and seconds is None:
            raise ValueError(f"{owner}.fit needs a budget: steps or seconds (or both; whichever ends first).")
        if steps is not None:
            _check_int(f"{owner}.fit", "steps", steps, 1)
        if seconds is not None:
            _check_float(f"{owner}.fit", "seconds", seconds, 0, math.inf, closed_low=False, closed_high=False)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"{owner}.fit needs as many labels as images, and at least one. Got {len(x)} images "
                             f"and {len(y)} labels instead.")
        clf = self.classifier
        device = resolve_device(self.device) if self.device is not None else next(clf.parameters()).device
        gen = seed_everything(self.seed)
        G = self._build().to(device)
        opt = torch.optim.Adam(G.parameters(), lr=self.lr)
        k, b, tf = self.n_classes, self.batch_size, float(self.targeted_fraction)
        history: dict[str, list[float]] = {key: [] for key in ("step", "seconds", "loss", "margin", "diversity", "success")}
        was_training = clf.training
        grads = [p.requires_grad for p in clf.parameters()]
        clf.eval()
        for p in clf.parameters():
            p.requires_grad_(False)
        t0 = time.perf_counter()
        step = 0
        try:
            with progress_bar(total=steps, desc="adversarial generator", enabled=progress) as bar:
                while (steps is None or step < steps) and (seconds is None or time.perf_counter() - t0 < seconds):
                    idx = torch.randint(len(x), (b,), generator=gen)
                    xb, yb = x[idx].to(device), y[idx].to(device)
                    targeted = (torch.rand(b, generator=gen) < tf).to(device)
                    target = (yb + torch.randint(1, k, (b,), generator=gen).to(device)) % k
                    code = self._codes(target, b, device, gen)
                    code = torch.where(targeted[:, None], code, self._codes(None, b, device, gen))
                    labels = torch.where(targeted, target, yb)
                    xx, cc = torch.cat([xb, xb]), torch.cat([code, code])
                    z = torch.randn(2 * b, self.latent_dim, generator=gen).to(device)
                    delta = self._delta(G, xx, cc, z)
                    logits = clf(xx + delta)
                    ll, tt = torch.cat([labels, labels]), torch.cat([targeted, targeted])
                    margin = torch.where(tt, margin_loss(logits, ll, targeted=True),
                                         margin_loss(logits, ll, targeted=False))
                    d1, d2 = delta[:b].flatten(1), delta[b:].flatten(1)
                    spread = (d1 - d2).norm(dim=1) / (d1.norm(dim=1) + d2.norm(dim=1) + 1e-12)
                    loss = margin.clamp(min=-float(self.kappa)).mean() - float(self.diversity) * spread.mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
                    success = float((margin < 0).float().mean())
                    for key, value in (("step", step), ("seconds", time.perf_counter() - t0), ("loss", float(loss.detach())),
                                       ("margin", float(margin.detach().mean())), ("diversity", float(spread.detach().mean())),
                                       ("success", success)):
                        history[key].append(value)
                    if not math.isfinite(history["loss"][-1]):
                        raise TrainingDivergedError(f"{owner}.fit diverged at step {step} (loss {history['loss'][-1]}); "
                                                 "lower lr.")
                    bar.update(1)
                    if step % 50 == 0:
                        bar.set_postfix(success=f"{success:.2f}")
        finally:
            clf.train(was_training)
            for p, g in zip(clf.parameters(), grads):
                p.requires_grad_(g)
        self.generator_ = G.eval()
        self.history_ = history
        log.info("adversarial generator: %d steps in %.1fs, last batch success %.3f", step,
                 time.perf_counter() - t0, history["success"][-1])
        return self

    def load_state(self, state: dict[str, torch.Tensor]) -> AdversarialGenerator:
        """Take trained weights (``generator_.state_dict()`` of an equal configuration) instead of fitting."""
        self.validate()
        G = self._build()
        G.load_state_dict(state)
        device = resolve_device(self.device) if self.device is not None else next(self.classifier.parameters()).device
        self.generator_ = G.to(device).eval()
        self.history_ = {}
        return self

    # ------------------------------------------------------------------ attacking
    def _check_fitted(self) -> PerturbationNet:
        if not hasattr(self, "generator_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit() or load_state() first.")
        return self.generator_

    @torch.no_grad()
    def samples(self, x: torch.Tensor, y: torch.Tensor, n: int, *, target: torch.Tensor | None = None,
                seed: int | None = None) -> torch.Tensor:
        """``n`` adversarial examples per image, ``(n, N, C, H, W)``: ``z`` and dropout differ between draws.

        Untargeted without ``target``; with ``target`` ``(N,)``, each image is pushed towards its target,
        which must differ from its true label ``y``.
        """
        G = self._check_fitted()
        _check_int(f"{type(self).__name__}.samples", "n", n, 1)
        if target is not None:
            if bool((target == y).any()):
                raise ValueError("The 'target' parameter must differ from the true label y for every sample "
                                 "(a targeted attack towards the true label is no attack).")
            if self.targeted_fraction == 0:
                raise ValueError("This generator was trained untargeted only (targeted_fraction=0); it cannot take a target.")
        elif self.targeted_fraction == 1:
            raise ValueError("This generator was trained targeted only (targeted_fraction=1); pass a target.")
        device = next(G.parameters()).device
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        x = x.to(device)
        code = self._codes(None if target is None else target.to(device), len(x), device, gen)
        xx, cc = x.repeat(n, *([1] * (x.dim() - 1))), code.repeat(n, 1)
        z = torch.randn(len(xx), self.latent_dim, generator=gen).to(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed if seed is None else seed)
            G.train()  # dropout is part of the sampling noise
            try:
                x_adv = xx + self._delta(G, xx, cc, z)  # all n draws in one forward pass
            finally:
                G.eval()
        return x_adv.view(n, *x.shape)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
                 seed: int | None = None) -> torch.Tensor:
        """One adversarial example per image, ``(N, C, H, W)`` (the first of :meth:`samples`)."""
        return self.samples(x, y, 1, target=target, seed=seed)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
