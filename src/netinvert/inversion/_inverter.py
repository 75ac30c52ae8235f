"""The generator-based inverter: train one conditional generator against a frozen classifier.

Network Inversion (arXiv 2407.18002, 2411.17777) learns a single generator ``G(z, c)`` such that
the frozen classifier ``f`` assigns ``G(z, c)`` the label encoded in ``c``, for every label at
once. Only ``G`` is trained; once trained, each new sample costs one generator forward pass.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import operator
import re
import time
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from .._progress import progress_bar

from .._device import resolve_device
from .._distributed import SINGLE, World, all_reduce_sum, average_buffers, current_world, data_parallel, shard, step_seed
from ..exceptions import NotFittedError, ResumeRefusedError, RunFormatError, TrainingDivergedError, UnsafeCheckpointError
from ..runs import WEIGHTS_NAME, file_sha256, jsonable, read_card, read_json, save_weights, write_card, write_json
from .._checkpoint import (
    CheckpointPlan,
    checkpoint_at_interrupt,
    changed_fields,
    read_checkpoint,
    restore_training_state,
    rng_state,
    strip_prefix,
    write_training_checkpoint,
)
from ._augment import Augmentation, make_augmentation
from ._conditioning import ConditionBatch, Conditioning, list_conditionings, make_conditioning
from ._generators import Generator, auto_generator_name, list_generators, make_generator
from ._losses import LossContext, Objective, bn_layers, capture_bn_stats, make_objective
from ._presets import LR_SCHEDULES, list_lr_schedules
from ._prior import ImagePrior, PriorGenerator, load_image_prior

__all__ = ["Inverter", "DEFAULT_LOSSES", "HISTORY_NAME", "default_losses"]

log = logging.getLogger(__name__)

#: Default objective, chosen by measurement on the digits CNN of ``netinvert train --dataset digits --model cnn``:
#: CE with cosine/orthogonality terms and the batch-norm and TV priors, plus the margin-limited pixel-space cosine term
#: that keeps samples of a class as varied as real digits (KL added nothing to CE with a sharp target). The figures
#: are in bench/results/inversion.md (``bench/inversion.py`` tier a, rows ``digits_*``) and docs/methods.md.
DEFAULT_LOSSES: tuple[str, ...] = ("ce:3", "cosine:1", "ortho:1", "bn:1", "tv:0.5", "cosine:3:centred=true,space=pixels,margin=0.4")

HISTORY_NAME = "history.json"


def classifier_fingerprint(classifier: nn.Module) -> str:
    """Short SHA-256 of the classifier's state dict, so a card can tell which classifier it inverted."""
    h = hashlib.sha256()
    for key, value in sorted(classifier.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_int(owner: str, name: str, value: Any, low: int) -> int:
    try:
        out = operator.index(value)
    except TypeError:
        out = None
    if out is None or isinstance(value, bool) or out < low:
        raise ValueError(f"The '{name}' parameter of {owner} must be an int in [{low}, inf). Got {value!r} instead.")
    return out


def _check_positive(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0) or not math.isfinite(value):
        raise ValueError(f"The '{name}' parameter of {owner} must be a float in (0, inf). Got {value!r} instead.")
    return float(value)


def default_losses(classifier: nn.Module) -> list[str]:
    """:data:`DEFAULT_LOSSES` as they apply to ``classifier`` (the batch-norm prior only where it has batch norm)."""
    has_bn = bool(bn_layers(classifier))
    return [s for s in DEFAULT_LOSSES if has_bn or not s.startswith("bn:")]


class Inverter:
    """Generator-based inversion of a frozen classifier (Network Inversion, arXiv 2407.18002).

    Parameters
    ----------
    classifier : Classifier
        Anything with ``input_shape`` ``(C, H, W)``, ``n_classes`` and
        ``forward_with_features(x) -> (logits, features)`` on ``(N, C, H, W)`` images in [0, 1]
        (:class:`netinvert.models.Classifier` and its wrappers). It is put in eval mode with
        gradients off during :meth:`fit` and restored afterwards; its weights never change.
    conditioning : str or Conditioning, default="vector"
        ``label``, ``vector``, ``matrix`` or ``vector+matrix`` (see
        :func:`list_conditionings`), or a conditioning object such as
        ``VectorConditioning(10, temperature=1.0)``.
    generator : str, default="auto"
        ``conv``, ``mlp``, ``prior`` or ``auto`` (``prior`` when ``image_prior`` is given, else
        ``conv`` for inputs of at least 8x8, else ``mlp``).
    image_prior : ImagePrior or path, optional
        A decoder trained on unlabelled images of the domain (:func:`train_image_prior`, or the
        folder ``netinvert prior`` wrote). The generator then chooses the decoder's codes instead of
        pixels, which keeps samples on the decoder's image manifold: on a plain Fashion-MNIST CNN this
        is what made the samples nameable (see :mod:`netinvert.inversion._prior` for the caveat on
        training-data reconstruction).
    losses : spec, optional
        A list of ``"name:weight[:key=value,...]"`` strings, a ``{name: weight}`` dict or a
        composed term (``10 * make_loss("ce") + ...``). Default :data:`DEFAULT_LOSSES`, without
        ``bn`` when the classifier has no batch norm.
    dropout : float, default=0.5
        Dropout rate of the generator's up-convolution layers, active when sampling too.
    latent_dim : int, default=64
        Size of the noise ``z``.
    width : int, optional
        Generator capacity (channels of the conv generator, hidden units / 4 of the MLP one).
        Default: 32 for inputs of at most 16x16 (digits: twice the steps per second of 64 at
        the same validity), 64 above.
    top_width : int, optional
        Channels of the conv generator's last block, the one at full resolution (default: ``width``).
        That block's cost grows with the image's area: at 28x28 it is most of a step's arithmetic, so a
        narrower one buys steps per second (``bench/results/throughput.md``). Conv generator only.
    lr : float, default=2e-3
        Adam learning rate of the generator (betas 0.5, 0.999, as for GAN generators).
    batch_size : int, default=64
        Generated samples per step, spread evenly over the classes. On digits, 64 at lr 2e-3
        beat 100 at lr 1e-3 for the same CPU time (validity 0.971 vs 0.956 after 600 steps).
    pairs : {"extra", "batch"}, default="extra"
        Where a pair-reading term (``mode_seeking``) gets its same-condition pairs. ``extra``: a second
        generator pass over half a batch of fresh latents with the first half's conditioning (half a
        batch more generator work per step). ``batch``: the batch itself is ``ceil(N / 2)`` conditionings
        drawn once and given twice, each with its own latent, and the pairs are its two halves: no
        extra pass, but half as many distinct conditionings per step. No effect without such a term.
    lr_schedule : {"constant", "cosine"}, default="cosine"
        Learning-rate decay over the fit budget (steps or seconds, whichever ends first).
    augment : str or Augmentation, default="none"
        Random transformation of the generated batch before the classifier scores it for the
        loss terms (``none``, ``shift``, ``shift-flip``, ``affine``; see :func:`list_augmentations`).
        ``shift-flip`` is what breaks fooling textures on Fashion-MNIST (see :data:`PRESETS`);
        digits are not mirror symmetric.
    ema : float, optional
        Decay of an exponential moving average of the generator's weights, kept during
        :meth:`fit` and then used for sampling and saving (``generator_``). Averaging over the
        last ~1/(1 - ema) steps holds within-class diversity that the last steps erode.
        ``None`` (default) samples the trained weights themselves. The decay ramps up as
        ``min(ema, (1 + t) / (10 + t))`` at step ``t`` (TensorFlow's ``num_updates`` warm-up):
        with a fixed 0.99, a 100-step fit on a loaded machine sampled weights still 37% those of
        the untrained generator (Fashion-MNIST validity 0.27 at 60 s).
    checkpoint_every : int, default=50
        Steps between in-memory checkpoints; a diverged fit restores the last one.
    seed : int, default=0
        Seeds the generator's initialisation, the noise, the conditioning draws and dropout.
    device : str or torch.device, optional
        Where to train; default: the classifier's device.

    Attributes
    ----------
    generator_ : Generator
        The trained generator (its EMA copy when ``ema`` is set).
    augmentation_ : Augmentation
    conditioning_ : Conditioning
    objective_ : Objective
    history_ : dict of str to list of float
        Per step: ``step``, ``seconds``, ``lr``, ``loss`` (weighted total), each term's
        unweighted value and ``validity`` (share of the batch classified as its label).

    Notes
    -----
    Defaults were measured on the digits CNN of ``netinvert train --dataset digits --model cnn`` at one
    CPU thread; what they score under :func:`netinvert.metrics.inversion_metrics` is in
    ``bench/results/inversion.md`` (``bench/inversion.py`` tier a).

    Examples
    --------
    >>> import torch
    >>> from netinvert.models import build_model
    >>> clf = build_model("cnn", input_shape=(1, 8, 8), n_classes=3)
    >>> inv = Inverter(clf, batch_size=12).fit(steps=2, progress=False)
    >>> inv.sample(label=1, n=4, seed=0).shape
    torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        classifier: nn.Module,
        *,
        conditioning: str | Conditioning = "vector",
        generator: str = "auto",
        image_prior: Any = None,
        losses: Any = None,
        dropout: float = 0.5,
        latent_dim: int = 64,
        width: int | None = None,
        lr: float = 2e-3,
        batch_size: int = 64,
        pairs: str = "extra",
        top_width: int | None = None,
        lr_schedule: str = "cosine",
        augment: str | Augmentation = "none",
        ema: float | None = None,
        checkpoint_every: int = 50,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        self.classifier = classifier
        self.conditioning = conditioning
        self.generator = generator
        self.image_prior = image_prior
        self.losses = losses
        self.dropout = dropout
        self.latent_dim = latent_dim
        self.width = width
        self.lr = lr
        self.batch_size = batch_size
        self.pairs = pairs
        self.top_width = top_width
        self.lr_schedule = lr_schedule
        self.augment = augment
        self.ema = ema
        self.checkpoint_every = checkpoint_every
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ configuration
    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters except the classifier (sklearn convention)."""
        return {k: getattr(self, k) for k in ("conditioning", "generator", "image_prior", "losses", "dropout", "latent_dim", "width", "top_width",
                                              "lr", "batch_size", "pairs", "lr_schedule", "augment", "ema", "checkpoint_every", "seed", "device")}

    def _validate(self) -> None:
        owner = type(self).__name__
        clf = self.classifier
        for attr in ("input_shape", "n_classes", "forward_with_features"):
            if not hasattr(clf, attr):
                raise ValueError(f"The 'classifier' parameter of {owner} must expose input_shape, n_classes and "
                                 f"forward_with_features (a netinvert Classifier); {type(clf).__name__} lacks {attr}.")
        _check_int(owner, "latent_dim", self.latent_dim, 1)
        if self.width is not None:
            _check_int(owner, "width", self.width, 1)
        if self.top_width is not None:
            _check_int(owner, "top_width", self.top_width, 1)
            if self._generator_name() != "conv":
                raise ValueError(f"The 'top_width' parameter of {owner} applies to the conv generator only; this inverter "
                                 f"uses {self._generator_name()!r}. Leave top_width as None.")
        if self.pairs not in PAIR_SOURCES:
            raise ValueError(f"The 'pairs' parameter of {owner} must be one of {list(PAIR_SOURCES)}. Got {self.pairs!r} instead.")
        _check_int(owner, "batch_size", self.batch_size, 2)
        _check_int(owner, "checkpoint_every", self.checkpoint_every, 1)
        _check_int(owner, "seed", self.seed, 0)
        _check_positive(owner, "lr", self.lr)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not (0 <= self.dropout < 1):
            raise ValueError(f"The 'dropout' parameter of {owner} must be a float in [0, 1). Got {self.dropout!r} instead.")
        if self.ema is not None and (isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not 0 < self.ema < 1):
            raise ValueError(f"The 'ema' parameter of {owner} must be a float in (0, 1) or None. Got {self.ema!r} instead.")
        if not isinstance(self.augment, (str, Augmentation)):
            raise ValueError(f"The 'augment' parameter of {owner} must be a name or an Augmentation. Got {type(self.augment).__name__} instead.")
        if isinstance(self.image_prior, tuple):
            raise ValueError(f"The 'image_prior' parameter of {owner} got a tuple; train_image_prior returns (prior, info): pass the prior.")
        if self.image_prior is not None and not isinstance(self.image_prior, (ImagePrior, str, Path)):
            raise ValueError(f"The 'image_prior' parameter of {owner} must be an ImagePrior or the folder 'netinvert prior' wrote. "
                             f"Got {type(self.image_prior).__name__} instead.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"The 'lr_schedule' parameter of {owner} must be one of {list_lr_schedules()}. Got {self.lr_schedule!r} instead.")

    def _resolve_device(self) -> torch.device:
        if self.device is not None:
            return resolve_device(self.device)
        param = next(iter(self.classifier.parameters()), None)
        return param.device if param is not None else torch.device("cpu")

    def _build_conditioning(self) -> Conditioning:
        n_classes = int(self.classifier.n_classes)
        if isinstance(self.conditioning, Conditioning):
            if self.conditioning.n_classes != n_classes:
                raise ValueError(f"The conditioning was built for {self.conditioning.n_classes} classes but the classifier has {n_classes}.")
            return self.conditioning
        if not isinstance(self.conditioning, str):
            raise ValueError(f"The 'conditioning' parameter of {type(self).__name__} must be a name or a Conditioning. "
                             f"Got {type(self.conditioning).__name__} instead.")
        return make_conditioning(self.conditioning, n_classes)

    def _build_objective(self) -> Objective:
        has_bn = bool(bn_layers(self.classifier))
        if self.losses is None:
            return make_objective(default_losses(self.classifier))
        objective = make_objective(self.losses)
        if objective.needs_bn_stats and not has_bn:
            raise ValueError(f"The 'bn' loss needs a classifier with BatchNorm layers; {type(self.classifier).__name__} has none. "
                             "Remove 'bn' from the losses.")
        return objective

    def _build_augmentation(self) -> Augmentation:
        return self.augment if isinstance(self.augment, Augmentation) else make_augmentation(self.augment)

    def _generator_name(self) -> str:
        if self.generator == "auto":
            return "prior" if self.image_prior is not None else auto_generator_name(self.classifier.input_shape)
        return str(self.generator)

    def _build_generator(self, cond: Conditioning) -> Generator:
        k = cond.n_classes
        name = self._generator_name()
        extra: dict[str, Any] = {}
        if self.image_prior is not None:
            if name != "prior":
                raise ValueError(f"An image_prior is used by the 'prior' generator only; got generator={self.generator!r}.")
            extra["prior"] = self.image_prior if isinstance(self.image_prior, nn.Module) else load_image_prior(self.image_prior)
        if self.top_width is not None:
            extra["top_width"] = int(self.top_width)
        return make_generator(name, input_shape=tuple(self.classifier.input_shape), latent_dim=int(self.latent_dim),
                              code_dim=k if cond.uses_code else 0, matrix_size=k if cond.uses_matrix else 0,
                              dropout=float(self.dropout), width=self._width(), **extra)

    def _width(self) -> int:
        if self.width is not None:
            return int(self.width)
        return 32 if max(int(s) for s in self.classifier.input_shape[1:]) <= 16 else 64

    # ------------------------------------------------------------------ training
    def fit(self, steps: int | None = None, seconds: float | None = None, progress: bool = True, *,
            checkpoint: str | Path | None = None, checkpoint_steps: int | None = None, checkpoint_seconds: float | None = 60.0,
            checkpoint_info: Mapping[str, Any] | None = None, resume_from: str | Path | None = None) -> Inverter:
        """Train the generator for ``steps`` steps and/or ``seconds`` seconds (whichever ends first).

        With neither given, trains for 1,000 steps (about a minute of one CPU core on digits).

        Parameters
        ----------
        steps, seconds : optional
            The budget, counted from the start of the fit: a resumed fit continues to the same total
            (a steps budget then ends exactly where an uninterrupted fit ends).
        progress : bool, default=True
        checkpoint : path, optional
            A file (conventionally :data:`~netinvert._checkpoint.CHECKPOINT_NAME`) that receives a
            checkpoint every ``checkpoint_steps`` steps and/or every ``checkpoint_seconds`` seconds, when training
            ends, and when the fit is interrupted (:class:`KeyboardInterrupt`: Ctrl-C, or SIGTERM under the CLI).
            Each write is atomic, so the file always holds one whole checkpoint. It holds the generator, its EMA
            copy, the Adam state, the step and elapsed seconds (the learning-rate schedule is a function of
            these), the history and every random state (torch CPU and CUDA, this fit's ``torch.Generator``, numpy,
            python ``random``), in one safetensors file (format in :mod:`netinvert._checkpoint`).
            An interrupt that lands inside a step rewinds to the step's start (nothing of it is kept); one that
            lands while the weights are being updated keeps the previous checkpoint.
        checkpoint_steps : int, optional
            Steps between checkpoints (``None``: by time only).
        checkpoint_seconds : float, optional, default=60
            Seconds between checkpoints (``None``: by steps only).
        checkpoint_info : mapping, optional
            JSON values recorded in the checkpoint's ``info`` (a pipeline records its config there).
        resume_from : path, optional
            A checkpoint written by a fit of an inverter with the same settings and classifier: training
            continues from it and, on the CPU with the same seed, ends with the same weights as an uninterrupted
            fit. numpy's and python's global random states are set from it too.

        Returns
        -------
        self

        Notes
        -----
        Inside an initialised ``torch.distributed`` process group (``torchrun``, see
        :mod:`netinvert._distributed`) the fit is data parallel: every rank draws the same global batch of
        ``batch_size`` labels, conditionings and latent codes from the shared seed and keeps an equal share of it,
        and DistributedDataParallel averages the generator's gradients, so equal ``steps`` are equal total steps.
        Dropout masks and augmentations are drawn per rank; the generator's batch norm and the batch terms
        (cosine, Gram orthogonality, batch-norm statistics) see each rank's share, as in any DDP training. Losses,
        validity and a ``seconds`` budget are agreed over the ranks every step, so every rank stops together.
        Rank 0 alone writes ``checkpoint``; ``batch_size`` must be a multiple of the world size (of twice it
        with ``pairs="batch"``) with at least two samples per rank.

        Raises
        ------
        TrainingDivergedError
            If a loss term or a gradient becomes NaN or infinite. The generator is reset to the
            last good checkpoint (``checkpoint_every`` steps apart) and stays usable, so a caller
            can still :meth:`save` it.
        RunFormatError
            If ``resume_from`` was written by an inverter with other settings or another classifier.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from netinvert.models import build_model
        >>> clf = build_model("cnn", input_shape=(1, 8, 8), n_classes=3)
        >>> ckpt = pathlib.Path(tempfile.mkdtemp()) / "checkpoint.safetensors"
        >>> inv = Inverter(clf, batch_size=12).fit(steps=2, progress=False, checkpoint=ckpt)
        >>> again = Inverter(clf, batch_size=12).fit(steps=4, progress=False, resume_from=ckpt)  # steps 2 and 3
        >>> len(again.history_["step"])
        4
        """
        self._validate()
        owner = type(self).__name__
        if steps is not None:
            steps = _check_int(f"{owner}.fit", "steps", steps, 1)
        if seconds is not None:
            seconds = _check_positive(f"{owner}.fit", "seconds", seconds)
        if steps is None and seconds is None:
            steps = 1000
        if checkpoint_steps is not None:
            checkpoint_steps = _check_int(f"{owner}.fit", "checkpoint_steps", checkpoint_steps, 1)
        if checkpoint_seconds is not None:
            checkpoint_seconds = _check_positive(f"{owner}.fit", "checkpoint_seconds", checkpoint_seconds)
        world = current_world()
        self._check_world(world)
        # in a distributed fit rank 0 alone writes; the others train beside it
        plan = None if checkpoint is None or not world.is_main else CheckpointPlan(
            Path(checkpoint), checkpoint_steps, checkpoint_seconds, jsonable(dict(checkpoint_info or {})))
        resume = read_checkpoint(resume_from) if resume_from is not None else None
        device = self._resolve_device()
        clf = self.classifier.to(device)
        cond = self._build_conditioning()
        objective = self._build_objective()
        augmentation = self._build_augmentation()
        was_training = clf.training
        grad_flags = [p.requires_grad for p in clf.parameters()]
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        try:
            clf.eval()
            clf.requires_grad_(False)
            self._probe(clf, device)
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(int(self.seed))
                self._train(clf, cond, objective, augmentation, device, steps, seconds, progress and world.is_main, plan,
                            resume, None if resume_from is None else Path(resume_from), world)
        finally:
            clf.train(was_training)
            for p, flag in zip(clf.parameters(), grad_flags):
                p.requires_grad_(flag)
        return self

    def _check_world(self, world: World) -> None:
        """Refuse a global batch the ranks of a distributed fit cannot share equally (before any work)."""
        if not world.distributed:
            return
        unit = world.size * (2 if self.pairs == "batch" else 1)
        bs = int(self.batch_size)
        if bs % unit or bs < 2 * world.size:
            raise ValueError(f"The 'batch_size' parameter of {type(self).__name__} is the global batch, shared equally by "
                             f"the {world.size} processes (at least 2 samples each{', in pairs' if unit > world.size else ''}), "
                             f"so it must be a multiple of {unit} and at least {2 * world.size}. Got {bs} instead.")

    @torch.no_grad()
    def _probe(self, clf: nn.Module, device: torch.device) -> None:
        """Fail early and clearly when the classifier does not take its declared input shape."""
        shape = tuple(int(s) for s in clf.input_shape)
        try:
            logits, features = clf.forward_with_features(torch.zeros(2, *shape, device=device))
        except RuntimeError as exc:
            raise ValueError(f"The classifier declares input_shape {shape} but fails on inputs of shape (N, {', '.join(map(str, shape))}): "
                             f"{exc}. Fix its input_shape.") from None
        if tuple(logits.shape) != (2, int(clf.n_classes)) or features.dim() != 2 or len(features) != 2:
            raise ValueError(f"The classifier must return logits (N, {clf.n_classes}) and features (N, D); "
                             f"got {tuple(logits.shape)} and {tuple(features.shape)}.")

    def _identity(self, G: Generator, cond: Conditioning, objective: Objective, augmentation: Augmentation,
                  world: World = SINGLE) -> dict[str, Any]:
        """What a checkpoint must have been made by to be resumed by this fit (JSON values).

        The world size is, when above 1: each rank's batch norm sees its own share of the batch, so resuming
        with another number of processes would not end where the interrupted fit would have.
        """
        params = {k: v for k, v in self.get_params().items()
                  if k not in ("conditioning", "generator", "image_prior", "losses", "augment", "device", "checkpoint_every")
                  and not (k in _NEW_PARAM_DEFAULTS and v == _NEW_PARAM_DEFAULTS[k])}  # older checkpoints still match
        ident = {"generator": self._generator_name(), "generator_params": G.get_params(), "conditioning": cond.name,
                 "conditioning_params": cond.get_params(), "losses": objective.spec(),
                 "augment": {"name": augmentation.name, "params": dict(augmentation.params)}, "params": params,
                 "classifier": self.fingerprint_}
        if world.distributed:
            ident["world_size"] = world.size
        return json.loads(json.dumps(jsonable(ident)))

    def _train(self, clf: nn.Module, cond: Conditioning, objective: Objective, augmentation: Augmentation,
               device: torch.device, steps: int | None, seconds: float | None, progress: bool,
               plan: CheckpointPlan | None, resume: tuple[dict[str, torch.Tensor], dict[str, Any]] | None,
               resume_path: Path | None, world: World = SINGLE) -> None:
        gen = torch.Generator().manual_seed(int(self.seed))
        G = self._build_generator(cond).to(device)
        self.conditioning_, self.objective_, self.generator_, self.augmentation_ = cond, objective, G, augmentation
        G_ema = copy.deepcopy(G) if self.ema is not None else None
        self.history_: dict[str, list[float]] = {"step": [], "seconds": [], "lr": [], "loss": [], "validity": []}
        self.fingerprint_ = classifier_fingerprint(clf)
        # the fused kernel is Adam's update in one pass over every tensor (the same math); the default for-loop
        # version spent ~100 small ops a step, 3-5% of a digits step on a CPU
        opt = torch.optim.Adam(G.parameters(), lr=float(self.lr), betas=(0.5, 0.999), fused=device.type in ("cpu", "cuda"))
        schedule = LR_SCHEDULES.get(self.lr_schedule)
        k, bs = cond.n_classes, int(self.batch_size)
        base_labels = torch.arange(bs) % k
        half_labels = torch.arange((bs + 1) // 2) % k
        good_state, good_step = copy.deepcopy(G.state_dict()), 0
        identity = self._identity(G, cond, objective, augmentation, world)
        net = data_parallel(G, device, world)
        step, elapsed, running_validity = 0, 0.0, None
        if resume is not None:
            step, elapsed, running_validity, good_state, good_step = self._restore(resume, resume_path, identity, G, G_ema,
                                                                                    opt, gen, device)
        bar = progress_bar(total=steps, desc="invert", enabled=progress)
        bar.update(step)
        t0 = time.perf_counter() - elapsed  # elapsed seconds (budget, schedule, history) continue where they stopped
        saved_step, saved_at = step, time.perf_counter()

        def save(rng: dict[str, Any]) -> None:
            nonlocal saved_step, saved_at
            if plan is None:
                return
            states = {"generator": G.state_dict(), "good": good_state}
            if G_ema is not None:
                states["ema"] = G_ema.state_dict()
            state = {"step": step, "elapsed": time.perf_counter() - t0, "running_validity": running_validity,
                     "good_step": good_step, "history": self.history_, "identity": identity, "info": plan.info,
                     "has_ema": G_ema is not None}
            write_training_checkpoint(plan.path, states, opt, rng, state)
            saved_step, saved_at = step, time.perf_counter()
            log.debug("checkpoint of step %d written to %s", step, plan.path)

        phase, snapshot = "boundary", None
        try:
            while True:
                # a step boundary: everything a checkpoint holds is consistent here
                if plan is not None and step > saved_step and plan.due(step, time.perf_counter() - saved_at):
                    save(rng_state(gen, device))
                elapsed = time.perf_counter() - t0
                stop = (steps is not None and step >= steps) or (seconds is not None and elapsed >= seconds)
                if world.distributed and seconds is not None:  # clocks differ: stop together, one schedule for all
                    votes, total_elapsed = all_reduce_sum([float(stop), elapsed], world)
                    stop, elapsed = votes > 0, total_elapsed / world.size
                if stop:
                    break
                if plan is not None:  # what the step changes before it commits: random states and batch-norm buffers
                    snapshot = (rng_state(gen, device), [b.detach().clone() for b in G.buffers()])
                phase = "compute"
                frac = max(step / steps if steps else 0.0, elapsed / seconds if seconds else 0.0)
                lr = float(self.lr) * schedule(frac)
                for group in opt.param_groups:
                    group["lr"] = lr
                G.train()
                # every rank draws the global batch from ``gen`` (so the streams stay equal) and keeps its share;
                # its own dropout masks and augmentations come from a seed of (step, rank)
                local_gen = gen
                if world.distributed:
                    torch.manual_seed(step_seed(int(self.seed), 0, step, world.rank))
                    local_gen = torch.Generator().manual_seed(step_seed(int(self.seed), 1, step, world.rank))
                pair = None
                if objective.needs_pair and self.pairs == "batch":
                    labels = half_labels[torch.randperm(len(half_labels), generator=gen)].to(device)
                    halves = cond(labels, gen)
                    z = torch.randn(bs, G.latent_dim, generator=gen).to(device)
                    h = bs // 2
                    if world.distributed:
                        mine = shard(torch.arange(len(labels)), world)
                        halves, z = _rows(halves, mine), torch.cat([z[:h][mine], z[-h:][mine]])
                        h = len(mine)
                    batch = _twice(halves, len(z))
                    labels = batch.labels
                    x = net(z, batch.code, batch.matrix)
                    pair = (x[:h], x[-h:], z[:h], z[-h:])  # the two halves share their conditionings
                else:
                    labels = base_labels[torch.randperm(bs, generator=gen)].to(device)
                    batch = cond(labels, gen)
                    z = torch.randn(bs, G.latent_dim, generator=gen).to(device)
                    if world.distributed:
                        mine = shard(torch.arange(bs), world)
                        batch, z = _rows(batch, mine), z[mine]
                        labels = batch.labels
                    x = net(z, batch.code, batch.matrix)
                if objective.needs_pair and self.pairs == "extra":
                    h = max(bs // 2, 1)
                    z2 = torch.randn(h, G.latent_dim, generator=gen).to(device)
                    if world.distributed:  # an equal share of the global extra draws
                        h = max(len(z) // 2, 1)
                        z2 = z2[world.rank * h : (world.rank + 1) * h]
                    code2 = None if batch.code is None else batch.code[:h]
                    matrix2 = None if batch.matrix is None else batch.matrix[:h]
                    # the module itself, not DDP's wrapper: both passes feed one backward, whose hooks average
                    # each parameter's summed gradient once
                    pair = (x[:h], G(z2, code2, matrix2), z[:h], z2)
                with capture_bn_stats(clf) if objective.needs_bn_stats else nullcontext([]) as stats:
                    logits, features = clf.forward_with_features(augmentation(x, local_gen))
                ctx = LossContext(x=x, logits=logits, features=features, cond=batch, classifier=clf, bn_stats=stats,
                                  generator=local_gen, pair=pair)
                total, values = objective.evaluate(ctx)
                floats = {name: float(v.detach()) for name, v in values.items()}
                loss_value = float(total.detach())
                validity = float((logits.detach().argmax(1) == labels).float().mean())
                if world.distributed:  # equal shares: the mean over the ranks is the global batch's figure
                    names = list(floats)
                    sums = all_reduce_sum([loss_value, validity, *(floats[n] for n in names)], world)
                    loss_value, validity = sums[0] / world.size, sums[1] / world.size
                    floats = {n: v / world.size for n, v in zip(names, sums[2:])}
                if not math.isfinite(loss_value):
                    bad = [n for n, v in floats.items() if not math.isfinite(v)] or ["loss"]
                    self._diverged(G, good_state, good_step, step, f"the loss term(s) {', '.join(bad)} became non-finite")
                if step % int(self.checkpoint_every) == 0:
                    good_state, good_step = copy.deepcopy(G.state_dict()), step
                opt.zero_grad(set_to_none=True)
                total.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(G.parameters(), float("inf"))
                if not torch.isfinite(grad_norm):
                    self._diverged(G, good_state, good_step, step, "the generator's gradient became non-finite")
                phase = "commit"
                opt.step()
                if G_ema is not None:
                    _ema_update(G_ema, G, min(float(self.ema), (1.0 + step) / (10.0 + step)))
                running_validity = validity if running_validity is None else 0.95 * running_validity + 0.05 * validity
                h = self.history_
                h["step"].append(step)
                h["seconds"].append(time.perf_counter() - t0)
                h["lr"].append(lr)
                h["loss"].append(loss_value)
                h["validity"].append(validity)
                for name, v in floats.items():
                    h.setdefault(name, []).append(v)
                step += 1
                phase = "boundary"
                bar.update(1)
                if progress and step % 10 == 0:
                    bar.set_postfix({"loss": f"{h['loss'][-1]:.3g}", **{n: f"{v:.3g}" for n, v in floats.items()},
                                     "valid": f"{running_validity:.3f}"}, refresh=False)
            if plan is not None and step > saved_step:  # the end of training: a resume goes straight to what follows
                save(rng_state(gen, device))
        except KeyboardInterrupt:
            if plan is not None:
                checkpoint_at_interrupt(phase, save, lambda: rng_state(gen, device), lambda: _rewind(G, snapshot), plan.path,
                                        step, saved_step)
            raise
        finally:
            bar.close()
        del net  # DDP's reducer holds the process group: it must not outlive the fit
        if world.distributed:  # every rank ends with the same generator
            average_buffers(G, world)
            if G_ema is not None:
                average_buffers(G_ema, world)
        if G_ema is not None:
            self.generator_ = G_ema
        log.info("inverted %s: %d steps in %.1fs, running validity %.3f", type(clf).__name__, step,
                 time.perf_counter() - t0, running_validity or 0.0)

    def _restore(self, resume: tuple[dict[str, torch.Tensor], dict[str, Any]], path: Path | None, identity: dict[str, Any],
                 G: Generator, G_ema: Generator | None, opt: torch.optim.Optimizer, gen: torch.Generator,
                 device: torch.device) -> tuple[int, float, float | None, dict[str, torch.Tensor], int]:
        """Load a checkpoint into the fit's objects; returns step, elapsed seconds, running validity and the last good state."""
        tensors, state = resume
        if state.get("identity") != identity:
            theirs = state.get("identity") or {}
            diff = changed_fields(identity, theirs)
            raise ResumeRefusedError(f"The checkpoint {path} was written by an inverter with another {', '.join(diff)}; resume it with "
                                 "the same settings and classifier, or start afresh without it.")
        if bool(state.get("has_ema")) != (G_ema is not None):
            raise ResumeRefusedError(f"The checkpoint {path} was written with ema={'on' if state.get('has_ema') else 'off'}; "
                                 "resume it with the same setting.")
        try:
            modules = {"generator": G} if G_ema is None else {"generator": G, "ema": G_ema}
            restore_training_state(tensors, state, modules, opt, gen, device)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ResumeRefusedError(f"The checkpoint {path} does not fit this inverter ({exc}); start afresh without it.") from None
        self.history_ = state["history"]
        good = {k: v.to(device) for k, v in strip_prefix("good", tensors).items()}
        log.info("resuming from step %d of %s", state["step"], path)
        return int(state["step"]), float(state["elapsed"]), state.get("running_validity"), good, int(state["good_step"])

    def _diverged(self, G: Generator, good_state: dict, good_step: int, step: int, what: str) -> None:
        G.load_state_dict(good_state)
        raise TrainingDivergedError(
            f"Inversion diverged at step {step}: {what}. The generator was reset to the last good checkpoint "
            f"(step {good_step}). Lower 'lr' (now {self.lr}) or the weights of the offending terms, or check that "
            "the classifier returns finite logits."
        )

    # ------------------------------------------------------------------ sampling
    def _check_fitted(self) -> None:
        if not hasattr(self, "generator_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' (or Inverter.load) before using it.")

    def sample(self, label: int, n: int, seed: int | None = None) -> torch.Tensor:
        """Draw ``n`` images ``(n, C, H, W)`` in [0, 1] conditioned on ``label``, on the CPU.

        Dropout stays active (each draw thins the generator differently); batch norm uses its
        running statistics, so a sample does not depend on the batch it is drawn in. The same
        ``seed`` gives the same samples; ``seed=None`` draws a fresh one.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        ValueError
            If ``label`` is not a class index of the classifier or ``n`` < 1.
        """
        self._check_fitted()
        k = self.conditioning_.n_classes
        try:
            index = operator.index(label)
        except TypeError:
            index = None
        if index is None or isinstance(label, bool) or not 0 <= index < k:
            raise ValueError(f"The 'label' parameter of sample must be an int in [0, {k - 1}]. Got {label!r} instead.")
        label = index
        n = _check_int("sample", "n", n, 1)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        G = self.generator_
        device = next(G.parameters()).device
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        out = []
        with torch.random.fork_rng(devices=fork_devices), torch.no_grad():
            torch.manual_seed(int(seed))
            gen = torch.Generator().manual_seed(int(seed))
            G.sampling_mode()
            for start in range(0, n, int(self.batch_size)):
                m = min(int(self.batch_size), n - start)
                labels = torch.full((m,), label, dtype=torch.long, device=device)
                batch = self.conditioning_(labels, gen)
                z = torch.randn(m, G.latent_dim, generator=gen).to(device)
                out.append(G(z, batch.code, batch.matrix).cpu())
        return torch.cat(out)

    def sample_between(self, a: int, b: int, n: int = 8, steps: int = 9, seed: int = 0) -> torch.Tensor:
        """Images ``(steps, n, C, H, W)`` on the path from label ``a`` to label ``b``, on the CPU.

        Each of the ``n`` paths keeps its noise ``z`` and draws one conditioning of ``a`` and one of
        ``b`` (as :meth:`sample` draws them), then mixes them: ``(1 - t) * cond_a + t * cond_b`` for
        ``t`` from 0 to 1 in ``steps`` steps (the hidden vector and the hot matrix alike). The
        generator never saw mixed conditionings, so the middle of a path is where the classifier's
        boundary between ``a`` and ``b`` shows: which features change, and where its label flips.
        Dropout stays active as in :meth:`sample`, with the same masks at every step of a path (the
        random state is reset before each step), so only the conditioning moves.

        Raises
        ------
        ValueError
            If ``a`` or ``b`` is not a class index, they are equal, or ``n`` < 1 or ``steps`` < 2.
        """
        self._check_fitted()
        k = self.conditioning_.n_classes
        for name, label in (("a", a), ("b", b)):
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < k:
                raise ValueError(f"The '{name}' parameter of sample_between must be an int in [0, {k - 1}]. Got {label!r} instead.")
        if a == b:
            raise ValueError(f"sample_between needs two different labels. Got a = b = {a}.")
        n = _check_int("sample_between", "n", n, 1)
        steps = _check_int("sample_between", "steps", steps, 2)
        G = self.generator_
        device = next(G.parameters()).device
        fork_devices = [device.index or 0] if device.type == "cuda" else []

        def mix(x: torch.Tensor | None, y: torch.Tensor | None, t: float) -> torch.Tensor | None:
            return None if x is None or y is None else (1 - t) * x + t * y

        with torch.random.fork_rng(devices=fork_devices), torch.no_grad():
            gen = torch.Generator().manual_seed(int(seed))
            ends = [self.conditioning_(torch.full((n,), label, dtype=torch.long, device=device), gen) for label in (a, b)]
            z = torch.randn(n, G.latent_dim, generator=gen).to(device)
            G.sampling_mode()
            out = []
            for t in torch.linspace(0, 1, steps).tolist():
                torch.manual_seed(int(seed))  # the same dropout masks at every step
                out.append(G(z, mix(ends[0].code, ends[1].code, t), mix(ends[0].matrix, ends[1].matrix, t)).cpu())
        return torch.stack(out)

    def sample_classes(self, n_per_class: int, seed: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_per_class`` samples of every class: images ``(K * n, C, H, W)`` and labels ``(K * n,)``, class by class."""
        self._check_fitted()
        k = self.conditioning_.n_classes
        base = 0 if seed is None else int(seed)
        xs = [self.sample(c, n_per_class, seed=None if seed is None else base + c) for c in range(k)]
        return torch.cat(xs), torch.arange(k).repeat_interleave(n_per_class)

    @torch.no_grad()
    def evaluate(self, n_per_class: int = 100, seed: int = 0) -> dict[str, Any]:
        """Validity and confidence of fresh samples under the inverted classifier itself.

        Returns ``{"validity", "confidence", "per_class": [{"label", "validity", "confidence"}]}``
        where validity is the share of samples whose argmax is their label and confidence the
        mean softmax probability of that label. These are the numbers an inversion is easiest to
        game on (fooling images score high); independent verifiers live in
        :mod:`netinvert.metrics`.
        """
        x, y = self.sample_classes(n_per_class, seed=seed)
        from ..metrics import validity_report

        return validity_report(self.classifier, x, y)

    # ------------------------------------------------------------------ persistence
    def save(self, run_dir: str | Path, card: Mapping[str, Any] | None = None) -> Path:
        """Write ``weights.safetensors``, ``card.json`` and ``history.json`` into ``run_dir``.

        ``card`` adds fields (e.g. the classifier's run folder, metrics) to the card.
        """
        self._check_fitted()
        run_dir = Path(run_dir)
        G = self.generator_
        gen_name = self._generator_name()
        weights = save_weights(run_dir / WEIGHTS_NAME, G.state_dict(), metadata={"generator": gen_name})
        # the image prior's weights are part of the generator's state: the folder needs no other one
        params = {k: v for k, v in self.get_params().items() if k not in ("conditioning", "generator", "image_prior", "losses", "augment", "device")}
        full = {
            "kind": "inverter",
            "method": "generator inversion (arXiv 2407.18002)",
            "generator": gen_name,
            "generator_params": G.get_params(),
            "conditioning": self.conditioning_.name,
            "conditioning_params": {k: v for k, v in self.conditioning_.get_params().items() if k != "n_classes"},
            "losses": self.objective_.spec(),
            "augment": {"name": self.augmentation_.name, "params": dict(self.augmentation_.params)},
            "params": params,
            "classifier": {"type": type(self.classifier).__name__, "input_shape": list(self.classifier.input_shape),
                           "n_classes": int(self.classifier.n_classes), "fingerprint": self.fingerprint_},
            "fit": {"steps": len(self.history_["step"]), "seconds": self.history_["seconds"][-1] if self.history_["seconds"] else 0.0},
            **(card or {}),
            "weights_sha256": file_sha256(weights),
        }
        write_card(run_dir, full)
        write_json(run_dir / HISTORY_NAME, self.history_)
        return run_dir

    @classmethod
    def load(cls, run_dir: str | Path, classifier: nn.Module, device: str | torch.device | None = None) -> Inverter:
        """Rebuild a fitted inverter from a run folder written by :meth:`save`.

        Everything the card says is checked before it is used: the keys and their JSON types, that the
        generator, conditioning, augmentation and loss names are registered here, that
        ``weights.safetensors`` is the file the card's ``weights_sha256`` names and fits the generator the
        card describes, and that its weights are finite. Nothing is written.

        ``classifier`` is the classifier the run inverted; load it with
        ``netinvert.models.load_classifier(..., expected_sha256=card["classifier_sha256"])`` from the path
        ``netinvert.models.resolve_recorded_path(run_dir, card["classifier_run"])`` (what
        :func:`netinvert.inversion.run_sampling` does), so that a replaced classifier is refused.

        Raises
        ------
        FileNotFoundError
            If the folder, its card or its weights are missing.
        RunFormatError
            If the card is not an inverter's, is malformed (a missing key, a value of the wrong type, an unknown
            generator, conditioning, augmentation or loss name, parameters the generator does not take), or
            ``classifier`` has another input shape or number of classes than the inverted one.
        UnsafeCheckpointError
            If ``weights.safetensors`` is unreadable, is not the file the card records (another run's weights),
            does not fit the generator the card describes, or holds NaN or infinite values.
        """
        from ..models import check_finite, read_weights

        run_dir = Path(run_dir)
        card_path = run_dir / "card.json"
        card = read_card(run_dir, required=("kind", "generator", "generator_params", "conditioning", "params", "classifier"))
        if card["kind"] != "inverter":
            raise RunFormatError(f"{card_path} describes a {card['kind']!r} run, not an inverter; pass an 'netinvert invert' run folder.")
        fix = "Re-run 'netinvert invert' to rewrite the run, or restore the card it wrote."
        want = _card_entry(card, "classifier", dict, card_path, fix)
        shape, n_classes = want.get("input_shape"), want.get("n_classes")
        if (not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(s) and s > 0 for s in shape)
                or not _is_int(n_classes) or n_classes < 1):
            raise RunFormatError(f"{card_path}: 'classifier' must hold 'input_shape' (three positive ints) and 'n_classes' "
                                 f"(a positive int). Got {want!r} instead. {fix}")
        gen_name = _card_entry(card, "generator", str, card_path, fix)
        gen_params = _card_entry(card, "generator_params", dict, card_path, fix)
        cond_name = _card_entry(card, "conditioning", str, card_path, fix)
        cond_params = _card_entry(card, "conditioning_params", dict, card_path, fix, default={})
        params = _card_entry(card, "params", dict, card_path, fix)
        losses = _card_entry(card, "losses", list, card_path, fix, default=[])
        aug_card = _card_entry(card, "augment", dict, card_path, fix, default={"name": "none", "params": {}})
        recorded_sha = card.get("weights_sha256")
        if recorded_sha is not None and (not isinstance(recorded_sha, str) or not re.fullmatch(r"[0-9a-f]{64}", recorded_sha)):
            raise RunFormatError(f"{card_path}: 'weights_sha256' must be 64 hex digits. Got {recorded_sha!r} instead. {fix}")
        for what, name, valid in (("generator", gen_name, list_generators()), ("conditioning", cond_name, list_conditionings())):
            if name not in valid:
                raise RunFormatError(f"{card_path} names the {what} {name!r}, which is not registered here. Valid names: "
                                     f"{', '.join(valid)}. Was it written by a newer netinvert or by a plugin not imported, or edited?")
        if not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in losses):
            raise RunFormatError(f"{card_path}: 'losses' must be a list of objects with a 'name'. Got {losses!r} instead. {fix}")
        if not isinstance(aug_card.get("name"), str) or not isinstance(aug_card.get("params", {}), dict):
            raise RunFormatError(f"{card_path}: 'augment' must be an object with a 'name' and 'params'. Got {aug_card!r} instead. {fix}")
        unknown = sorted(set(params) - _LOADABLE_PARAMS)
        if unknown:
            raise RunFormatError(f"{card_path}: 'params' holds {', '.join(map(repr, unknown))}, which Inverter does not take. {fix}")
        if list(classifier.input_shape) != list(shape) or int(classifier.n_classes) != int(n_classes):
            raise RunFormatError(f"{run_dir} inverted a classifier of input shape {tuple(shape)} with {n_classes} classes; "
                                 f"the given one has {tuple(classifier.input_shape)} and {classifier.n_classes}.")
        if classifier_fingerprint(classifier) != want.get("fingerprint"):
            warnings.warn(f"{run_dir} was fitted against a classifier with other weights; samples may not be valid for this one.", stacklevel=2)
        registered = [s for s in losses if s.get("registered", True)]
        if len(registered) < len(losses):
            warnings.warn(f"{run_dir} used user-defined loss terms that cannot be rebuilt; they are left out of 'losses'.", stacklevel=2)
        try:
            cond = make_conditioning(cond_name, int(n_classes), **cond_params)
            augmentation = make_augmentation(aug_card["name"], **aug_card.get("params", {}))
            objective = make_objective(registered) if registered else None
            inv = cls(classifier, conditioning=cond, generator=gen_name, losses=registered or None, augment=augmentation,
                      device=device, **params)
            inv._validate()
            G = make_generator(gen_name, **gen_params)
        except (TypeError, ValueError, KeyError) as exc:  # UnknownNameError is a KeyError
            raise RunFormatError(f"{card_path} does not describe a generator this netinvert can rebuild "
                                 f"({type(exc).__name__}: {exc}). {fix}") from None
        weights_path = run_dir / WEIGHTS_NAME
        state, sha = read_weights(weights_path)
        if recorded_sha is not None and sha != recorded_sha:
            raise UnsafeCheckpointError(
                f"{weights_path} is not the file {card_path.name} describes: its sha256 is {sha}, the card records {recorded_sha}. "
                "It was replaced (another run's weights?), edited or damaged; restore the run's own weights.safetensors "
                "or re-run 'netinvert invert'.")
        try:
            G.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise UnsafeCheckpointError(
                f"{weights_path} does not fit the {gen_name!r} generator {card_path.name} describes "
                f"({first[1].strip() if len(first) > 1 else first[0]} ...): it holds another generator's weights. Restore the "
                "run's own weights.safetensors or re-run 'netinvert invert'.") from None
        check_finite(state, weights_path)
        G.to(inv._resolve_device())
        if isinstance(G, PriorGenerator):  # so that a loaded run can be fitted again or cloned
            inv.image_prior = G.prior
        inv.conditioning_, inv.generator_, inv.fingerprint_, inv.augmentation_ = cond, G, want.get("fingerprint"), augmentation
        inv.objective_ = objective if objective is not None else inv._build_objective()
        history_path = run_dir / HISTORY_NAME
        inv.history_ = read_json(history_path) if history_path.is_file() else {}
        return inv

    def __repr__(self) -> str:
        cond = self.conditioning if isinstance(self.conditioning, str) else repr(self.conditioning)
        return f"{type(self).__name__}({type(self.classifier).__name__}, conditioning={cond!r}, generator={self.generator!r})"



#: The ``params`` of a card that :meth:`Inverter.load` passes back to the constructor.
_LOADABLE_PARAMS = frozenset({"dropout", "latent_dim", "width", "top_width", "lr", "batch_size", "pairs", "lr_schedule", "ema",
                              "checkpoint_every", "seed"})

#: Where pair-reading terms get their pairs (see the ``pairs`` parameter).
PAIR_SOURCES = ("extra", "batch")

#: Parameters added after checkpoints were first written: left out of a fit's identity at these values.
_NEW_PARAM_DEFAULTS = {"pairs": "extra", "top_width": None}


def _rows(batch: ConditionBatch, index: torch.Tensor) -> ConditionBatch:
    """The rows ``index`` of every tensor of ``batch`` (one rank's share of a global batch)."""
    return ConditionBatch(*(None if t is None else t[index.to(t.device)] for t in
                            (getattr(batch, f.name) for f in dataclasses.fields(batch))))


def _twice(batch: ConditionBatch, n: int) -> ConditionBatch:
    """``batch`` followed by itself, cut to ``n`` rows: each conditioning given twice (``pairs="batch"``)."""
    return ConditionBatch(*(None if t is None else torch.cat([t, t])[:n] for t in
                            (getattr(batch, f.name) for f in dataclasses.fields(batch))))

_JSON_TYPE = {dict: "a JSON object", list: "a JSON list", str: "a string"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _card_entry(card: Mapping[str, Any], key: str, kind: type, card_path: Path, fix: str, default: Any = ...) -> Any:
    """``card[key]``, checked to be of JSON type ``kind`` (a missing key is an error unless ``default`` is given)."""
    if key not in card:
        if default is ...:
            raise RunFormatError(f"{card_path} lacks {key!r}. {fix}")
        return default
    value = card[key]
    if not isinstance(value, kind):
        raise RunFormatError(f"{card_path}: {key!r} must be {_JSON_TYPE[kind]}. Got {type(value).__name__} {value!r} instead. {fix}")
    return value


@torch.no_grad()
def _rewind(G: Generator, snapshot: Any) -> dict[str, Any]:
    """Put back the batch-norm buffers an unfinished step changed; return the random states it started from."""
    rng, buffers = snapshot
    for b, saved in zip(G.buffers(), buffers):
        b.copy_(saved)
    return rng


@torch.no_grad()
def _ema_update(average: nn.Module, model: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model`` for trained weights; buffers (BN statistics) are copied.

    Frozen weights (an image prior's) are left alone: averaging equal float32 values still moves their last bits.
    """
    for pa, pm in zip(average.parameters(), model.parameters()):
        if pm.requires_grad:
            pa.mul_(decay).add_(pm.detach(), alpha=1.0 - decay)
    for ba, bm in zip(average.buffers(), model.buffers()):
        ba.copy_(bm)
