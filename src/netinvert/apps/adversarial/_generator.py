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
construction, then clamped to [0, 1]. The loss reads Carlini-Wagner's margin (:func:`margin_loss`:
untargeted, the true label's lead; targeted, the target's deficit) through a registered per-sample
objective (:data:`GENERATOR_LOSSES`): ``margin`` clamps it at ``-kappa``; ``boundary`` is
``sigmoid(margin / kappa)``, a smooth count of the failures whose gradient is largest at the decision
boundary and fades both for examples already won and for examples out of reach of the budget.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..._checkpoint import (CheckpointPlan, changed_fields, checkpoint_at_interrupt, read_checkpoint, restore_training_state,
                             rng_state, tensors_sha256, write_training_checkpoint)
from ..._device import resolve_device, seed_everything
from ..._progress import progress_bar
from ..._registry import Registry
from ...exceptions import NotFittedError, ResumeRefusedError, TrainingDivergedError
from ...inversion import make_conditioning
from ...inversion._inverter import classifier_fingerprint
from ...runs import jsonable
from ._attacks import Norm, check_eps, make_norm, margin_loss

__all__ = ["PerturbationNet", "AdversarialGenerator", "GENERATOR_CONDITIONINGS", "GENERATOR_LOSSES", "GENERATOR_DRAWS",
           "GENERATOR_OUTPUTS", "list_generator_losses", "list_generator_draws", "list_generator_outputs",
           "register_generator_loss"]

log = logging.getLogger(__name__)

#: Conditionings the generator can read: those that give it a vector (the matrix ones feed conv layers).
GENERATOR_CONDITIONINGS = ("label", "vector")

GeneratorLoss = Callable[[torch.Tensor, float], torch.Tensor]
#: Per-sample training objectives of the generator, ``(margin, kappa) -> loss`` (to be minimised), where ``margin``
#: is :func:`margin_loss`'s (negative once the attack's goal is met) and ``kappa`` a scale in logits.
GENERATOR_LOSSES: Registry[GeneratorLoss] = Registry("generator loss")


def register_generator_loss(name: str) -> Callable[[GeneratorLoss], GeneratorLoss]:
    """Register a per-sample generator objective ``(margin, kappa) -> loss`` under ``name``."""
    return GENERATOR_LOSSES.register(name)


def list_generator_losses() -> list[str]:
    return GENERATOR_LOSSES.names()


@register_generator_loss("margin")
def margin(m: torch.Tensor, kappa: float) -> torch.Tensor:
    """Carlini-Wagner's margin clamped at ``-kappa``: every example not yet won by ``kappa`` pulls with gradient 1,
    however far it is from the boundary."""
    return m.clamp(min=-kappa)


@register_generator_loss("boundary")
def boundary(m: torch.Tensor, kappa: float) -> torch.Tensor:
    """``sigmoid(margin / kappa)``: a smooth share of failures (0.5 on the boundary, towards 0 once won and 1 out of
    reach). Its gradient peaks at the boundary and decays as ``exp(-|margin| / kappa)``, so the generator spends
    its capacity on the examples the budget can turn rather than on those it cannot (most of a robust model's)."""
    return torch.sigmoid(m / kappa)


Draw = Callable[[torch.Tensor], tuple[torch.Tensor, bool]]
#: How the generator's noise is set when it attacks, ``z -> (z used, dropout on)``: ``random`` draws ``z ~ N(0, I)``
#: with dropout on (distinct examples per input); ``mean`` sets ``z = 0`` with dropout off (the draws' centre: one
#: deterministic example per input, often a stronger single guess than a random draw). Both cost one forward pass.
GENERATOR_DRAWS: Registry[Draw] = Registry("generator draw")
GENERATOR_DRAWS.add("random", lambda z: (z, True))
GENERATOR_DRAWS.add("mean", lambda z: (torch.zeros_like(z), False))


def list_generator_draws() -> list[str]:
    return GENERATOR_DRAWS.names()


Output = Callable[[Norm, torch.Tensor, float], torch.Tensor]
#: How the network's raw output becomes a perturbation in the ball, ``(norm, raw, eps) -> delta``: ``squash`` is the
#: norm's :meth:`~netinvert.apps.adversarial.Norm.squash` (L-inf ``eps * tanh(2 raw / rms(raw))``: a typical pixel
#: moves by ~0.85 eps, a fifth by less than half of it); ``corner`` moves every pixel to the ball's surface
#: (:meth:`~netinvert.apps.adversarial.Norm.corner`, L-inf ``eps * sign``, where a linear model's best perturbation
#: lies) and trains through the squash's gradient (a straight-through estimator). For L2 both are the same.
GENERATOR_OUTPUTS: Registry[Output] = Registry("generator output")
GENERATOR_OUTPUTS.add("squash", lambda norm, raw, eps: norm.squash(raw, eps))


@GENERATOR_OUTPUTS.register("corner")
def _corner(norm: Norm, raw: torch.Tensor, eps: float) -> torch.Tensor:
    soft = norm.squash(raw, eps)
    return soft + (norm.corner(soft, eps) - soft).detach()  # forward: the corner; backward: the squash


def list_generator_outputs() -> list[str]:
    return GENERATOR_OUTPUTS.names()


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
    output : {"squash", "corner"}, default="squash"
        How the raw output enters the ball (:data:`GENERATOR_OUTPUTS`): the norm's smooth squash, or
        its corner (L-inf: every pixel moved by exactly ``eps``) trained straight through the squash.
    loss : str, default="margin"
        The per-sample objective of the margin (:data:`GENERATOR_LOSSES`): ``margin`` (clamped at
        ``-kappa``) or ``boundary`` (``sigmoid(margin / kappa)``, focused on the examples near the boundary).
    kappa : float, default=2.0
        The margin scale in logits: where ``margin`` stops pulling, the width of ``boundary``'s sigmoid.
    diversity : float, default=0.1
        Weight of the mode-seeking term ``-||d1 - d2|| / (||d1|| + ||d2||)`` between two draws for the
        same image and goal.
    true_label : bool, default=False
        Also show the generator each image's true label (a one-hot beside the goal's code): the label
        PGD's loss reads, so the attack uses no more than PGD does. Without it the generator must infer
        the class from the image; against a PGD-trained CNN, whose adversarial directions depend on the
        class, it raised untargeted success on a validation split by a fifth (bench/results/adversarial.md).
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
                 dropout: float = 0.2, output: str = "squash", loss: str = "margin", kappa: float = 2.0, diversity: float = 0.1,
                 true_label: bool = False, lr: float = 1e-3, batch_size: int = 128, seed: int = 0,
                 device: str | torch.device | None = None) -> None:
        self.classifier = classifier
        self.eps = eps
        self.norm = norm
        self.targeted_fraction = targeted_fraction
        self.conditioning = conditioning
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.output = output
        self.loss = loss
        self.kappa = kappa
        self.diversity = diversity
        self.true_label = true_label
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments but the classifier and device: what a card records to rebuild it."""
        return {"eps": self.eps, "norm": self.norm, "targeted_fraction": self.targeted_fraction,
                "conditioning": self.conditioning, "hidden": list(self.hidden), "latent_dim": self.latent_dim,
                "dropout": self.dropout, "output": self.output, "loss": self.loss, "kappa": self.kappa, "diversity": self.diversity,
                "true_label": self.true_label, "lr": self.lr,
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
        if not isinstance(self.output, str) or self.output not in GENERATOR_OUTPUTS:
            raise ValueError(f"The 'output' parameter of {owner} must be one of {list_generator_outputs()}. "
                             f"Got {self.output!r} instead.")
        if not isinstance(self.loss, str) or self.loss not in GENERATOR_LOSSES:
            raise ValueError(f"The 'loss' parameter of {owner} must be one of {list_generator_losses()}. "
                             f"Got {self.loss!r} instead.")
        _check_float(owner, "kappa", self.kappa, 0, math.inf, closed_low=False, closed_high=False)
        _check_float(owner, "diversity", self.diversity, 0, math.inf, closed_high=False)
        if not isinstance(self.true_label, bool):
            raise ValueError(f"The 'true_label' parameter of {owner} must be a bool. Got {self.true_label!r} instead.")
        _check_float(owner, "lr", self.lr, 0, math.inf, closed_low=False, closed_high=False)
        return self

    # ------------------------------------------------------------------ the network and its inputs
    @property
    def n_classes(self) -> int:
        return int(self.classifier.n_classes)

    def _norm(self) -> Norm:
        return make_norm(self.norm)

    def _build(self) -> PerturbationNet:
        return PerturbationNet(tuple(self.classifier.input_shape), self.n_classes * (1 + bool(self.true_label)) + 1, self.latent_dim,
                               tuple(self.hidden), self.dropout)

    def _codes(self, target: torch.Tensor | None, n: int, device: torch.device,
               generator: torch.Generator | None) -> torch.Tensor:
        """The goal as the generator reads it: the target's conditioning code and a 0, or zeros and a 1 (untargeted);
        with ``true_label``, :meth:`_with_label` appends the true label."""
        k = self.n_classes
        if target is None:
            return torch.cat([torch.zeros(n, k, device=device), torch.ones(n, 1, device=device)], 1)
        cond = make_conditioning(self.conditioning, k)
        code = cond(target.cpu(), generator).code.to(device)
        return torch.cat([code, torch.zeros(n, 1, device=device)], 1)

    def _with_label(self, code: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.true_label:
            return code
        return torch.cat([code, nn.functional.one_hot(y.to(code.device), self.n_classes).to(code.dtype)], 1)

    def _delta(self, G: PerturbationNet, x: torch.Tensor, code: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        delta = GENERATOR_OUTPUTS.get(self.output)(self._norm(), G(x, code, z), float(self.eps))
        return (x + delta).clamp(0, 1) - x

    # ------------------------------------------------------------------ training
    def fit(self, x: torch.Tensor, y: torch.Tensor, *, steps: int | None = None, seconds: float | None = None,
            progress: bool = True, checkpoint: str | Path | None = None, checkpoint_steps: int | None = None,
            checkpoint_seconds: float | None = 60.0, checkpoint_info: Mapping[str, Any] | None = None,
            resume_from: str | Path | None = None) -> AdversarialGenerator:
        """Train on images ``x`` ``(N, C, H, W)`` in [0, 1] with labels ``y`` until ``steps`` or ``seconds`` end.

        Each step draws ``batch_size`` images (seeded), gives a ``targeted_fraction`` share of them a random
        other label as target, draws two ``z`` per image and minimises the mean ``loss`` of both draws' margins
        minus ``diversity`` times their mode-seeking distance. Returns ``self``.

        Parameters
        ----------
        steps, seconds : optional
            The budget (whichever ends first), counted from the start of the fit: a resumed fit continues
            to the same total.
        checkpoint : path, optional
            A file (conventionally :data:`~netinvert._checkpoint.CHECKPOINT_NAME`) that receives a checkpoint
            every ``checkpoint_steps`` steps and/or ``checkpoint_seconds`` seconds, when training ends and when
            it is interrupted (``KeyboardInterrupt``: Ctrl-C, or SIGTERM under the CLI). Each write is atomic.
            It holds the generator, Adam's state, the step, the elapsed seconds, the history and every random
            state (the fit's ``torch.Generator``, torch's global one (dropout), numpy, python ``random``), in one
            safetensors file (format in :mod:`netinvert._checkpoint`). An interrupt inside a step rewinds its
            random draws (it is redone on resume); one while the weights are being updated keeps the previous
            checkpoint.
        checkpoint_steps : int, optional
            Steps between checkpoints (``None``: by time only).
        checkpoint_seconds : float, optional, default=60
            Seconds between checkpoints (``None``: by steps only).
        checkpoint_info : mapping, optional
            JSON values recorded in the checkpoint's ``info`` (a pipeline records its config there).
        resume_from : path, optional
            A checkpoint written by a fit with the same parameters, classifier and images: training continues
            from its step to the weights an uninterrupted fit ends with (bit for bit on the same device and
            thread count).

        Raises
        ------
        ResumeRefusedError (a RunFormatError)
            If ``resume_from`` was written by a fit with other parameters, another classifier or other images.
        TrainingDivergedError
            If the loss becomes non-finite.
        """
        self.validate()
        owner = type(self).__name__
        if steps is None and seconds is None:
            raise ValueError(f"{owner}.fit needs a budget: steps or seconds (or both; whichever ends first).")
        if steps is not None:
            _check_int(f"{owner}.fit", "steps", steps, 1)
        if seconds is not None:
            _check_float(f"{owner}.fit", "seconds", seconds, 0, math.inf, closed_low=False, closed_high=False)
        if checkpoint_steps is not None:
            _check_int(f"{owner}.fit", "checkpoint_steps", checkpoint_steps, 1)
        if checkpoint_seconds is not None:
            checkpoint_seconds = _check_float(f"{owner}.fit", "checkpoint_seconds", checkpoint_seconds, 0, math.inf,
                                              closed_low=False, closed_high=False)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"{owner}.fit needs as many labels as images, and at least one. Got {len(x)} images "
                             f"and {len(y)} labels instead.")
        plan = None if checkpoint is None else CheckpointPlan(Path(checkpoint), checkpoint_steps, checkpoint_seconds,
                                                               jsonable(dict(checkpoint_info or {})))
        resume = None if resume_from is None else read_checkpoint(resume_from)
        clf = self.classifier
        device = resolve_device(self.device) if self.device is not None else next(clf.parameters()).device
        gen = seed_everything(self.seed)
        G = self._build().to(device)
        opt = torch.optim.Adam(G.parameters(), lr=self.lr)
        k, b, tf = self.n_classes, self.batch_size, float(self.targeted_fraction)
        objective = GENERATOR_LOSSES.get(self.loss)
        history: dict[str, list[float]] = {key: [] for key in ("step", "seconds", "loss", "margin", "diversity", "success")}
        identity = self._identity(clf, x, y) if plan is not None or resume is not None else None
        step, elapsed = 0, 0.0
        if resume is not None:
            step, elapsed, history = self._restore(resume, Path(resume_from), identity, G, opt, gen, device)
        was_training = clf.training
        grads = [p.requires_grad for p in clf.parameters()]
        clf.eval()
        for p in clf.parameters():
            p.requires_grad_(False)
        t0 = time.perf_counter() - elapsed  # elapsed seconds (budget, history) continue where they stopped
        saved_step, saved_at = step, time.perf_counter()

        def save(rng: dict[str, Any]) -> None:
            nonlocal saved_step, saved_at
            if plan is None:
                return
            state = {"step": step, "elapsed": time.perf_counter() - t0, "history": history, "identity": identity,
                     "info": plan.info}
            write_training_checkpoint(plan.path, {"generator": G.state_dict()}, opt, rng, state)
            saved_step, saved_at = step, time.perf_counter()
            log.debug("checkpoint of step %d written to %s", step, plan.path)

        # ``phase`` says how far a step got ("commit": the weights may be half updated); ``snapshot`` holds the random
        # states it started from (the generator has no buffers: its random draws are all a step changes before it commits)
        phase, snapshot = "boundary", None
        try:
            with progress_bar(total=steps, desc="adversarial generator", enabled=progress) as bar:
                bar.update(step)
                while True:
                    # a step boundary: everything a checkpoint holds is consistent here
                    if plan is not None and step > saved_step and plan.due(step, time.perf_counter() - saved_at):
                        save(rng_state(gen, device))
                    if (steps is not None and step >= steps) or (seconds is not None and time.perf_counter() - t0 >= seconds):
                        break
                    if plan is not None:
                        snapshot = rng_state(gen, device)
                    phase = "compute"
                    idx = torch.randint(len(x), (b,), generator=gen)
                    xb, yb = x[idx].to(device), y[idx].to(device)
                    targeted = (torch.rand(b, generator=gen) < tf).to(device)
                    target = (yb + torch.randint(1, k, (b,), generator=gen).to(device)) % k
                    code = self._codes(target, b, device, gen)
                    code = torch.where(targeted[:, None], code, self._codes(None, b, device, gen))
                    labels = torch.where(targeted, target, yb)
                    code = self._with_label(code, yb)
                    xx, cc = torch.cat([xb, xb]), torch.cat([code, code])
                    z = torch.randn(2 * b, self.latent_dim, generator=gen).to(device)
                    delta = self._delta(G, xx, cc, z)
                    logits = clf(xx + delta)
                    ll, tt = torch.cat([labels, labels]), torch.cat([targeted, targeted])
                    margin = torch.where(tt, margin_loss(logits, ll, targeted=True),
                                         margin_loss(logits, ll, targeted=False))
                    d1, d2 = delta[:b].flatten(1), delta[b:].flatten(1)
                    spread = (d1 - d2).norm(dim=1) / (d1.norm(dim=1) + d2.norm(dim=1) + 1e-12)
                    loss = objective(margin, float(self.kappa)).mean() - float(self.diversity) * spread.mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    success = float((margin < 0).float().mean())
                    values = {"loss": float(loss.detach()), "margin": float(margin.detach().mean()),
                              "diversity": float(spread.detach().mean()), "success": success}
                    phase = "commit"
                    opt.step()
                    step += 1
                    history["step"].append(step)
                    history["seconds"].append(time.perf_counter() - t0)
                    for key, value in values.items():
                        history[key].append(value)
                    phase = "boundary"
                    if not math.isfinite(history["loss"][-1]):
                        raise TrainingDivergedError(f"{owner}.fit diverged at step {step} (loss {history['loss'][-1]}); "
                                                    "lower lr.")
                    bar.update(1)
                    if step % 50 == 0:
                        bar.set_postfix(success=f"{success:.2f}")
                if plan is not None and step > saved_step:  # the end of training: a resume goes straight to what follows
                    save(rng_state(gen, device))
        except KeyboardInterrupt:
            if plan is not None:  # the generator has no buffers: a step's random draws are all it changes before it commits
                checkpoint_at_interrupt(phase, save, lambda: rng_state(gen, device), lambda: snapshot, plan.path, step,
                                        saved_step)
            raise
        finally:
            clf.train(was_training)
            for p, g in zip(clf.parameters(), grads):
                p.requires_grad_(g)
        self.generator_ = G.eval()
        self.history_ = history
        log.info("adversarial generator: %d steps in %.1fs, last batch success %.3f", step,
                 time.perf_counter() - t0, history["success"][-1] if history["success"] else float("nan"))
        return self

    def _identity(self, classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """What a checkpoint must have been made by to be resumed by this fit (JSON values): the parameters, the
        classifier's weights and the training images and labels."""
        ident = {"params": self.get_params(), "classifier": classifier_fingerprint(classifier), "n_images": len(x),
                 "data_sha256": tensors_sha256(x, y)}
        return json.loads(json.dumps(jsonable(ident)))

    def _restore(self, resume: tuple[dict[str, torch.Tensor], dict[str, Any]], path: Path, identity: dict[str, Any] | None,
                 G: PerturbationNet, opt: torch.optim.Optimizer, gen: torch.Generator,
                 device: torch.device) -> tuple[int, float, dict[str, list[float]]]:
        """Load a checkpoint into the fit's objects; returns the step, the elapsed seconds and the history."""
        tensors, state = resume
        theirs = state.get("identity") or {}
        if theirs != identity:
            diff = changed_fields(identity, theirs)
            raise ResumeRefusedError(f"The checkpoint {path} was written by a generator fit with another {', '.join(diff)}; "
                                 "resume it with the same settings, classifier and images, or start afresh without it.")
        try:
            restore_training_state(tensors, state, {"generator": G}, opt, gen, device)
            step, elapsed = int(state["step"]), float(state["elapsed"])
            history = {key: list(state["history"][key]) for key in ("step", "seconds", "loss", "margin", "diversity", "success")}
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise ResumeRefusedError(f"The checkpoint {path} does not fit this generator ({exc}); start afresh without it.") from None
        log.info("resuming the adversarial generator from step %d of %s", step, path)
        return step, elapsed, history

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
                seed: int | None = None, draw: str = "random") -> torch.Tensor:
        """``n`` adversarial examples per image, ``(n, N, C, H, W)``: ``z`` and dropout differ between draws.

        Untargeted without ``target``; with ``target`` ``(N,)``, each image is pushed towards its target,
        which must differ from its true label ``y``. ``draw`` (:data:`GENERATOR_DRAWS`) sets the noise:
        ``random`` (the default) or ``mean`` (``z = 0``, dropout off: the ``n`` draws are equal).
        """
        G = self._check_fitted()
        _check_int(f"{type(self).__name__}.samples", "n", n, 1)
        if len(y) != len(x):
            raise ValueError(f"{type(self).__name__}.samples needs one label per image. Got {len(x)} images and "
                             f"{len(y)} labels instead.")
        y = torch.as_tensor(y).long()
        noise = GENERATOR_DRAWS.get(draw)
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
        code = self._with_label(code, y)
        xx, cc = x.repeat(n, *([1] * (x.dim() - 1))), code.repeat(n, 1)
        z, dropout = noise(torch.randn(len(xx), self.latent_dim, generator=gen).to(device))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed if seed is None else seed)
            G.train(dropout)  # dropout is part of the sampling noise
            try:
                x_adv = xx + self._delta(G, xx, cc, z)  # all n draws in one forward pass
            finally:
                G.eval()
        return x_adv.view(n, *x.shape)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
                 seed: int | None = None, draw: str = "random") -> torch.Tensor:
        """One adversarial example per image, ``(N, C, H, W)`` (the first of :meth:`samples`)."""
        return self.samples(x, y, 1, target=target, seed=seed, draw=draw)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
