"""A learned image prior: a VAE decoder whose codes the inversion generator chooses.

Pixel-level priors (total variation, batch-norm statistics, jitter) were not enough to make a plain
Fashion-MNIST CNN's inverted samples nameable: its gradients are not perceptually aligned, and a
generator that can paint any pixel finds blobs the classifier accepts. Following Nguyen et al.
2016 ("Synthesizing the preferred inputs for neurons in neural networks via deep generator
networks"), the generator can instead be confined to the range of a decoder trained on
*unlabelled* images of the domain: :class:`PriorGenerator` maps ``(z, code)`` to a decoder code
and the frozen decoder draws the image. The classifier being inverted is unchanged; only the set of
images the generator can reach shrinks to the decoder's image manifold.

The decoder is a VAE's rather than a plain autoencoder's because a VAE pulls its codes towards
``N(0, I)``: codes inside a ball of radius about ``sqrt(code_dim)`` decode to images, codes far
outside it to anything. The generator's codes are softly bounded to that ball.

Caveat for audits: a prior trained on the classifier's own training set shows what the classifier
accepts *among images like that set*. For training-data reconstruction (does the classifier leak
its training images?) use no prior, or one trained on disjoint data, or the prior is what leaks.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from .._progress import progress_bar

from .._device import resolve_device
from ..exceptions import ResumeRefusedError, RunFormatError
from .._checkpoint import (
    CheckpointPlan,
    checkpoint_at_interrupt,
    changed_fields,
    read_checkpoint,
    restore_training_state,
    rng_state,
    write_training_checkpoint,
)
from ..runs import WEIGHTS_NAME, file_sha256, jsonable, load_weights, read_card, save_weights, write_card
from ._generators import Generator, mlp_body, register_generator

__all__ = ["ImagePrior", "PriorGenerator", "train_image_prior", "save_image_prior", "load_image_prior"]

log = logging.getLogger(__name__)


class ImagePrior(nn.Module):
    """VAE decoder: code ``(N, code_dim)`` -> image ``(N, C, H, W)`` in [0, 1] (two hidden layers, sigmoid).

    No batch norm or dropout, so a frozen prior draws the same image for a code in any mode.
    A fully connected decoder: in the same 170 s on a CPU a small convolutional decoder finished
    under one epoch of Fashion-MNIST (308 steps) and this one twelve (5,178), and only this one's
    codes gave nameable inversions (``docs/history/inversion_prior_probe.md``).
    """

    def __init__(self, input_shape: Sequence[int], code_dim: int = 32, hidden: Sequence[int] = (256, 512)) -> None:
        super().__init__()
        if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
            raise ValueError(f"The 'input_shape' parameter of ImagePrior must be (C, H, W) of positive ints. Got {tuple(input_shape)} instead.")
        if int(code_dim) < 1:
            raise ValueError(f"The 'code_dim' parameter of ImagePrior must be an int in [1, inf). Got {code_dim} instead.")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.code_dim = int(code_dim)
        self.hidden = tuple(int(h) for h in hidden)
        sizes = (self.code_dim, *self.hidden)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], math.prod(self.input_shape)))

    def get_params(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "code_dim": self.code_dim, "hidden": list(self.hidden)}

    def logits(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code).view(len(code), *self.input_shape)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(code))


class _Encoder(nn.Module):
    """Image -> (mean, log-variance) of the code; used only while training the prior."""

    def __init__(self, input_shape: Sequence[int], code_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        sizes = (math.prod(input_shape), *reversed(tuple(hidden)))
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], 2 * code_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, 1)
        return mu, logvar


def train_image_prior(images: torch.Tensor, *, code_dim: int = 32, hidden: Sequence[int] = (256, 512), epochs: int = 12,
                      batch_size: int = 128, lr: float = 2e-3, seed: int = 0, progress: bool = False,
                      test_images: torch.Tensor | None = None, device: str | torch.device = "cpu",
                      checkpoint: str | Path | None = None, checkpoint_steps: int | None = None,
                      checkpoint_seconds: float | None = 60.0, checkpoint_info: Mapping[str, Any] | None = None,
                      resume_from: str | Path | None = None) -> tuple[ImagePrior, dict[str, Any]]:
    """Train a VAE (Bernoulli likelihood, beta = 1) on unlabelled ``images`` in [0, 1]; return its frozen decoder.

    ``device`` is where it trains (``cpu``, ``cuda`` or ``auto``); the decoder is returned on the CPU.

    Parameters
    ----------
    checkpoint : path, optional
        A file (conventionally :data:`~netinvert._checkpoint.CHECKPOINT_NAME`) that receives a checkpoint every
        ``checkpoint_steps`` batches and/or ``checkpoint_seconds`` seconds, when training ends and when it is
        interrupted (:class:`KeyboardInterrupt`). It holds the encoder and decoder, the optimiser, the epoch and
        batch position with the epoch's shuffled order, and every random state (format in
        :mod:`netinvert._checkpoint`); each write is atomic.
    checkpoint_steps : int, optional
        Batches between checkpoints (``None``: by time only).
    checkpoint_seconds : float, optional, default=60
        Seconds between checkpoints (``None``: by batches only).
    checkpoint_info : mapping, optional
        JSON values recorded in the checkpoint's ``info`` (a pipeline records its config there).
    resume_from : path, optional
        A checkpoint written by a training of the same settings and images: training continues from it and ends
        with the weights an uninterrupted training ends with (on the same device and thread count).

    Returns
    -------
    prior : ImagePrior
        The decoder, frozen (no gradients) and in eval mode, on the CPU.
    info : dict
        ``epochs``, ``seconds``, the last batch's reconstruction and KL terms, and, with
        ``test_images``, ``test_mse`` of reconstructions from the mean code.

    Raises
    ------
    RunFormatError
        If ``resume_from`` was written by a training with other settings or images.
    """
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"train_image_prior needs images of shape (N, C, H, W) with N >= 2. Got {tuple(images.shape)} instead.")
    if test_images is not None and tuple(test_images.shape[1:]) != tuple(images.shape[1:]):
        raise ValueError(f"test_images must have the shape of the images, (M, {', '.join(map(str, images.shape[1:]))}). "
                         f"Got {tuple(test_images.shape)} instead.")
    if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("train_image_prior needs finite images in [0, 1] (its likelihood is Bernoulli per pixel).")
    if int(epochs) < 1:
        raise ValueError(f"The 'epochs' parameter of train_image_prior must be an int in [1, inf). Got {epochs} instead.")
    if checkpoint_steps is not None and (isinstance(checkpoint_steps, bool) or not isinstance(checkpoint_steps, int) or checkpoint_steps < 1):
        raise ValueError(f"The 'checkpoint_steps' parameter of train_image_prior must be an int in [1, inf) or None. "
                         f"Got {checkpoint_steps!r} instead.")
    if checkpoint_seconds is not None and (isinstance(checkpoint_seconds, bool) or not isinstance(checkpoint_seconds, (int, float))
                                           or not checkpoint_seconds > 0):
        raise ValueError(f"The 'checkpoint_seconds' parameter of train_image_prior must be a float in (0, inf) or None. "
                         f"Got {checkpoint_seconds!r} instead.")
    dev = resolve_device(device)
    plan = None if checkpoint is None else CheckpointPlan(Path(checkpoint), checkpoint_steps, checkpoint_seconds,
                                                            jsonable(dict(checkpoint_info or {})))
    resume = None if resume_from is None else (Path(resume_from), *read_checkpoint(resume_from))
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):  # the caller's random state is kept
        torch.manual_seed(seed)
        return _train_vae(images, test_images, code_dim, hidden, int(epochs), batch_size, lr, seed, progress, dev, plan, resume)


def _images_digest(images: torch.Tensor) -> str:
    """sha256 of the training images, so that a checkpoint is resumed on the images it was trained on only."""
    return hashlib.sha256(images.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def _train_vae(images: torch.Tensor, test_images: torch.Tensor | None, code_dim: int, hidden: Sequence[int], epochs: int,
               batch_size: int, lr: float, seed: int, progress: bool, device: torch.device,
               plan: CheckpointPlan | None = None,
               resume: tuple[Path, dict[str, torch.Tensor], dict[str, Any]] | None = None) -> tuple[ImagePrior, dict[str, Any]]:
    g = torch.Generator().manual_seed(seed)
    shape = tuple(images.shape[1:])
    prior, enc = ImagePrior(shape, code_dim, hidden).to(device), _Encoder(shape, code_dim, hidden).to(device)
    opt = torch.optim.Adam([*enc.parameters(), *prior.parameters()], lr=lr)
    x_all = images.float().to(device)
    n = len(x_all)
    per_epoch = max(n // batch_size, 1)
    identity = {"code_dim": int(code_dim), "hidden": [int(h) for h in hidden], "epochs": int(epochs), "batch_size": int(batch_size),
                "lr": float(lr), "seed": int(seed), "n_images": n, "images_sha256": _images_digest(images) if plan or resume else None}
    # position: ``batch`` batches done in all; ``order`` is the shuffled order of the current epoch (None at its start)
    batch, elapsed, order = 0, 0.0, None
    rec_value = kl_value = float("nan")
    if resume is not None:
        batch, elapsed, order, rec_value, kl_value = _restore_vae(resume, identity, enc, prior, opt, g, device)
    bar = progress_bar(total=epochs * per_epoch, desc="train image prior", enabled=progress)
    bar.update(batch)
    t0 = time.perf_counter() - elapsed
    saved_batch, saved_at = batch, time.perf_counter()

    def save(rng: dict[str, Any]) -> None:
        nonlocal saved_batch, saved_at
        if plan is None:
            return
        state = {"batch": batch, "elapsed": time.perf_counter() - t0, "reconstruction": rec_value, "kl": kl_value,
                 "identity": identity, "info": plan.info}
        write_training_checkpoint(plan.path, {"decoder": prior.state_dict(), "encoder": enc.state_dict()}, opt, rng, state,
                                  extra=None if order is None else {"order": order})
        saved_batch, saved_at = batch, time.perf_counter()
        log.debug("checkpoint of batch %d written to %s", batch, plan.path)

    phase, snapshot = "boundary", None
    try:
        while batch < epochs * per_epoch:
            # a batch boundary: everything a checkpoint holds is consistent here
            if plan is not None and batch > saved_batch and plan.due(batch, time.perf_counter() - saved_at):
                save(rng_state(g, device))
            if plan is not None:  # what the batch changes before it commits: the random states (and a new epoch's order)
                snapshot = (rng_state(g, device), order)
            phase = "compute"
            i = batch % per_epoch
            if i == 0 or order is None:
                order = torch.randperm(n, generator=g)
            x = x_all[order[i * batch_size:(i + 1) * batch_size]]
            mu, logvar = enc(x)
            code = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            rec = F.binary_cross_entropy_with_logits(prior.logits(code), x, reduction="sum") / len(x)
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(x)
            loss = rec + kl
            if not torch.isfinite(loss):
                raise FloatingPointError("The image prior's VAE loss is not finite; lower 'lr'.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            phase = "commit"
            opt.step()
            rec_value, kl_value = rec.item(), kl.item()
            batch += 1
            if batch % per_epoch == 0:
                order = None  # the next epoch draws its own
            phase = "boundary"
            bar.update(1)
            bar.set_postfix(rec=f"{rec_value:.1f}", kl=f"{kl_value:.1f}")
        if plan is not None and batch > saved_batch:  # the end of training: a resume goes straight to what follows
            save(rng_state(g, device))
    except KeyboardInterrupt:
        if plan is not None:
            def batch_start() -> dict[str, Any]:  # what the unfinished batch drew, and the order it may have begun
                nonlocal order
                rng, order = snapshot
                return rng

            checkpoint_at_interrupt(phase, save, lambda: rng_state(g, device), batch_start, plan.path, batch, saved_batch,
                                    unit="batch")
        raise
    finally:
        bar.close()
    info: dict[str, Any] = {"epochs": epochs, "seconds": time.perf_counter() - t0, "reconstruction": rec_value,
                            "kl": kl_value, "n_images": n}
    prior.requires_grad_(False).eval()
    if test_images is not None:
        with torch.no_grad():
            test = test_images.float().to(device)
            mu, _ = enc(test)
            info["test_mse"] = float(F.mse_loss(prior(mu), test))
    return prior.cpu(), info


def _restore_vae(resume: tuple[Path, dict[str, torch.Tensor], dict[str, Any]], identity: dict[str, Any], enc: nn.Module,
                 prior: ImagePrior, opt: torch.optim.Optimizer, g: torch.Generator,
                 device: torch.device) -> tuple[int, float, torch.Tensor | None, float, float]:
    """Load a checkpoint into the training's objects; returns batches done, elapsed seconds, the epoch's order, rec and KL."""
    path, tensors, state = resume
    theirs = state.get("identity") or {}
    if theirs != identity:
        diff = changed_fields(identity, theirs)
        raise ResumeRefusedError(f"The checkpoint {path} was written by an image-prior training with another {', '.join(diff)}; resume "
                             "it with the same settings and images, or start afresh without it.")
    try:
        restore_training_state(tensors, state, {"decoder": prior, "encoder": enc}, opt, g, device)
        batch, elapsed = int(state["batch"]), float(state["elapsed"])
        rec, kl = state.get("reconstruction"), state.get("kl")
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ResumeRefusedError(f"The checkpoint {path} does not fit this image-prior training ({exc}); start afresh without it.") from None
    log.info("resuming the image prior from batch %d of %s", batch, path)
    return batch, elapsed, tensors.get("order"), float("nan") if rec is None else rec, float("nan") if kl is None else kl


def save_image_prior(run_dir: str | Path, prior: ImagePrior, card: dict[str, Any] | None = None) -> Path:
    """Write the decoder's ``weights.safetensors`` and a ``card.json`` (``kind: image-prior``)."""
    run_dir = Path(run_dir)
    weights = save_weights(run_dir / WEIGHTS_NAME, prior.state_dict(), metadata={"model": "image-prior"})
    write_card(run_dir, {"kind": "image-prior", "prior_params": prior.get_params(), **(card or {}),
                         "weights_sha256": file_sha256(weights)})
    return run_dir


def load_image_prior(run_dir: str | Path) -> ImagePrior:
    """Rebuild a frozen :class:`ImagePrior` from a folder written by :func:`save_image_prior`."""
    card = read_card(run_dir, required=("kind",))
    if card["kind"] != "image-prior":
        raise RunFormatError(f"{run_dir} holds a {card['kind']!r} run; pass a folder written by 'netinvert prior'.")
    card = read_card(run_dir, required=("kind", "prior_params"))
    try:
        prior = ImagePrior(**card["prior_params"])
        prior.load_state_dict(load_weights(Path(run_dir) / WEIGHTS_NAME))
    except (TypeError, RuntimeError) as exc:
        raise RunFormatError(f"{run_dir} does not hold a consistent image prior ({exc}); re-run 'netinvert prior'.") from None
    return prior.requires_grad_(False).eval()


@register_generator("prior")
class PriorGenerator(Generator):
    """``prior(bound(MLP(z, code)))``: an MLP generator that outputs a code of a frozen :class:`ImagePrior`.

    Two hidden layers of ``4 * width`` units (batch norm, ReLU, dropout kept active when sampling,
    as in the other generators) map noise and conditioning to a code, whose norm is bounded
    softly to ``radius * sqrt(code_dim)`` (``r tanh(|h| / r) h / |h|``). The prior is copied (the
    caller's module is never moved or changed); its weights are part of this module's state
    (saved with the generator, so a run folder is self-contained) but get no gradient.

    Parameters
    ----------
    prior : ImagePrior, optional
        The trained decoder. Omitted when rebuilding from a card: ``prior_params`` then builds
        an empty one whose weights the saved state dict fills.
    prior_params : dict, optional
        :meth:`ImagePrior.get_params` of the decoder, when ``prior`` is not given.
    radius : float
        Code norm bound in units of ``sqrt(code_dim)`` (the norm of a typical ``N(0, I)`` code):
        codes far outside decode to artefacts. On the plain Fashion CNN (3000 steps, the probe's
        recipe with the pixel margin at 0.4) 2 reached validity 0.954 and 0.918 with two seeds, 1.5
        reached 0.904 with one, at equal realism.
    """

    def __init__(self, *, prior: ImagePrior | None = None, prior_params: dict[str, Any] | None = None,
                 radius: float = 2.0, **params: Any) -> None:
        super().__init__(**params)
        if prior is None:
            if prior_params is None:
                raise ValueError("The 'prior' generator needs a trained image prior: Inverter(image_prior=...) in Python, "
                                 "--image-prior DIR on the command line (DIR written by 'netinvert prior').")
            prior = ImagePrior(**prior_params).requires_grad_(False).eval()
        else:
            prior = copy.deepcopy(prior)
        if tuple(prior.input_shape) != self.input_shape:
            raise ValueError(f"The image prior draws images of shape {tuple(prior.input_shape)} but the classifier takes {self.input_shape}.")
        if self.matrix_size:
            raise ValueError("The 'prior' generator has no intermediate feature map for a conditioning matrix; "
                             "use conditioning='vector' or 'label'.")
        if not float(radius) > 0:
            raise ValueError(f"The 'radius' parameter of PriorGenerator must be a float in (0, inf). Got {radius} instead.")
        hidden = 4 * self.width
        if self.code_dim:
            self.embed = nn.Linear(self.code_dim, self.latent_dim)
        in_dim = self.latent_dim * (2 if self.code_dim else 1)
        self.body = mlp_body(in_dim, hidden, prior.code_dim, self.dropout)
        self.radius = float(radius)
        self.prior = prior.requires_grad_(False)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "prior_params": self.prior.get_params(), "radius": self.radius}

    def train(self, mode: bool = True) -> PriorGenerator:
        super().train(mode)
        self.prior.eval()  # frozen: nothing in it depends on the mode, kept in eval for clarity
        return self

    def codes(self, z: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """The prior codes for noise ``z`` and conditioning ``code``, inside the radius."""
        h = self.body(self._inputs(z, code))
        bound = self.radius * math.sqrt(self.prior.code_dim)
        norm = h.norm(dim=1, keepdim=True).clamp_min(1e-6)
        return h * (bound * torch.tanh(norm / bound) / norm)

    def forward(self, z: torch.Tensor, code: torch.Tensor | None = None, matrix: torch.Tensor | None = None) -> torch.Tensor:
        return self.prior(self.codes(z, code))
