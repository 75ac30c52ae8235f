"""Training and evaluation of classifiers (plain or adversarially trained)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._checkpoint import (
    changed_fields,
    read_checkpoint,
    restore_training_state,
    rng_state,
    write_training_checkpoint,
)
from .._device import resolve_device, seed_everything
from .._distributed import SINGLE, World, all_reduce_sum, average_buffers, data_parallel, pad, rank_device, shard, step_seed
from .._progress import progress_bar
from ..data import Dataset
from ..exceptions import ResumeRefusedError, TrainingDivergedError
from ..runs import jsonable
from ._base import Classifier

__all__ = ["OPTIMIZERS", "TrainConfig", "train_classifier", "evaluate_classifier", "predict", "pgd_attack"]

log = logging.getLogger(__name__)

#: Optimisers :class:`TrainConfig` names: ``(parameters, lr, weight_decay) -> torch.optim.Optimizer``.
#: OneCycleLR schedules both (it cycles SGD's momentum between 0.85 and 0.95).
OPTIMIZERS: dict[str, Any] = {
    "adamw": lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
    "sgd": lambda params, lr, wd: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd),
}


@dataclass(frozen=True)
class TrainConfig:
    """How a classifier is trained.

    ``optimizer`` names an entry of :data:`OPTIMIZERS`: ``adamw`` (the default; weight decay decoupled)
    or ``sgd`` (momentum 0.9, weight decay as an L2 penalty in the gradient). Full-batch ``sgd`` with
    weight decay, trained long, ends near a stationary point of the regularised loss, where the
    weights are a combination of the training points' gradients: the regime in which the KKT
    reconstruction attack (``netinvert reconstruct --method kkt``) is known to work.

    ``eval_every`` epochs the test accuracy is measured (and after the last epoch; the history
    holds ``None`` for the others): thousands of full-batch epochs on a few hundred images would
    otherwise spend most of their time on the test set.

    ``adv_eps`` > 0 trains adversarially (PGD in the L-infinity ball of that radius, in [0, 1]
    pixel units, ``adv_steps`` steps): such *robust* classifiers serve as sceptical verifiers of
    inverted samples, because they do not share a plain model's non-robust cues.

    The defaults train the digits CNN to about 0.99 test accuracy in well under a minute on
    two CPU cores; larger datasets want a larger ``batch_size`` and fewer epochs (see
    ``bench/classifiers.py`` for a Fashion-MNIST recipe).
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    adv_eps: float = 0.0
    adv_steps: int = 5
    device: str = "auto"
    optimizer: str = "adamw"
    eval_every: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "adv_steps", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"The '{name}' parameter of TrainConfig must be an int in [1, inf). Got {getattr(self, name)} instead.")
        if not (self.lr > 0):
            raise ValueError(f"The 'lr' parameter of TrainConfig must be > 0. Got {self.lr} instead.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"The 'optimizer' parameter of TrainConfig must be one of {sorted(OPTIMIZERS)}. "
                             f"Got {self.optimizer!r} instead.")
        if not (self.weight_decay >= 0):
            raise ValueError(f"The 'weight_decay' parameter of TrainConfig must be >= 0. Got {self.weight_decay} instead.")
        if not (0 <= self.adv_eps < 1):
            raise ValueError(f"The 'adv_eps' parameter of TrainConfig must be in [0, 1). Got {self.adv_eps} instead.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pgd_attack(model: Classifier, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Untargeted L-inf PGD with a random start, kept inside [0, 1]."""
    was_training = model.training
    model.eval()
    alpha = 2.5 * eps / steps
    delta = (torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1) * eps
    x_adv = (x + delta).clamp(0, 1).detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1).detach()
    model.train(was_training)
    return x_adv


def train_classifier(model: Classifier, data: Dataset, config: TrainConfig | None = None, *, progress: bool = True,
                     checkpoint: str | Path | None = None, checkpoint_steps: int | None = None,
                     checkpoint_seconds: float | None = 60.0, checkpoint_info: Mapping[str, Any] | None = None,
                     resume_from: str | Path | None = None) -> dict[str, list[float]]:
    """Train ``model`` on ``data``'s training split; return per-epoch loss and test accuracy.

    Parameters
    ----------
    model : Classifier
    data : Dataset
    config : TrainConfig, optional
    progress : bool
        Show a progress bar (on a terminal; log lines elsewhere).
    checkpoint : path, optional
        A file (conventionally :data:`~netinvert._checkpoint.CHECKPOINT_NAME`) that receives a checkpoint every
        ``checkpoint_steps`` batches and/or every ``checkpoint_seconds`` seconds, when training ends, and when
        training is interrupted (:class:`KeyboardInterrupt`: Ctrl-C, or SIGTERM under the CLI). Each write is
        atomic. It holds the weights and batch-norm buffers, the AdamW state, the OneCycleLR schedule, the epoch
        and batch position (with the epoch's batch order), the history, and every random state (torch, numpy,
        python ``random`` and the data-order generator), in one safetensors file (:mod:`netinvert._checkpoint`).
        An interrupt inside a batch rewinds to the batch's start; one inside the optimiser's update keeps the
        previous checkpoint.
    checkpoint_steps : int, optional
        Batches between checkpoints (``None``: by time only).
    checkpoint_seconds : float, optional, default=60
        Seconds between checkpoints (``None``: by batches only).
    checkpoint_info : mapping, optional
        JSON values recorded in the checkpoint's ``info`` (a pipeline records its config there).
    resume_from : path, optional
        A checkpoint written by training of the same architecture with the same ``config`` on data of the same
        size: training continues from it and, on the CPU, ends with the weights and history an uninterrupted
        run ends with.

    Raises
    ------
    TrainingDivergedError
        If the loss becomes NaN or infinite (lower ``lr``).
    RunFormatError
        If ``resume_from`` was written by another training (config, architecture or data size).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from netinvert.data import load_dataset
    >>> from netinvert.models import build_model
    >>> data = load_dataset("digits").subset(n_train=128, seed=0)
    >>> cfg = TrainConfig(epochs=2, device="cpu")
    >>> model = build_model("mlp", input_shape=data.input_shape, n_classes=data.n_classes, hidden=[16])
    >>> ckpt = pathlib.Path(tempfile.mkdtemp()) / "checkpoint.safetensors"
    >>> history = train_classifier(model, data, cfg, progress=False, checkpoint=ckpt)
    >>> again = build_model("mlp", input_shape=data.input_shape, n_classes=data.n_classes, hidden=[16])
    >>> train_classifier(again, data, cfg, progress=False, resume_from=ckpt) == history  # nothing left to train
    True
    """
    return _fit(model, data, config or TrainConfig(), progress=progress, checkpoint=checkpoint,
                checkpoint_steps=checkpoint_steps, checkpoint_seconds=checkpoint_seconds,
                checkpoint_info=checkpoint_info, resume_from=resume_from)[0]


def _check_every(name: str, value: Any, kind: type, owner: str = "train_classifier") -> Any:
    """``checkpoint_steps`` (an int >= 1) or ``checkpoint_seconds`` (a finite float > 0), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not value > 0 \
            or (kind is int and not float(value).is_integer()):
        what = "an int in [1, inf)" if kind is int else "a finite float > 0"
        raise ValueError(f"The '{name}' parameter of {owner} must be None or {what}. Got {value!r} instead.")
    return kind(value)


def _identity(model: Classifier, config: TrainConfig, n: int, world: World = SINGLE) -> dict[str, Any]:
    """What a checkpoint must have been made by to be resumed (JSON values); the device is not part of it.

    The world size is, when above 1: each process's batch norm sees its own share of the batch, so
    resuming with another number of processes would not end where the interrupted run would have.
    """
    train = {k: v for k, v in config.to_dict().items() if k != "device"}
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    ident = {"model": type(model).__name__, "shapes": shapes, "train": train, "n_train": n}
    if world.distributed:
        ident["world_size"] = world.size
    return json.loads(json.dumps(jsonable(ident)))


def check_world(config: TrainConfig, world: World) -> None:
    """Refuse a global batch the processes cannot share equally (before any work)."""
    if world.distributed and config.batch_size % world.size:
        raise ValueError(f"The 'batch_size' parameter of TrainConfig is the global batch, shared equally by the "
                         f"{world.size} processes, so it must be a multiple of {world.size}. Got {config.batch_size} instead.")


def _fit(model: Classifier, data: Dataset, config: TrainConfig, *, progress: bool, checkpoint: str | Path | None,
         checkpoint_steps: int | None, checkpoint_seconds: float | None, checkpoint_info: Mapping[str, Any] | None,
         resume_from: str | Path | None, world: World = SINGLE) -> tuple[dict[str, list[float]], float]:
    """:func:`train_classifier`, also returning the training seconds (those before a resume included).

    With a distributed ``world`` (:mod:`netinvert._distributed`) the model is wrapped in
    DistributedDataParallel and each process trains on its share of every global batch of
    ``config.batch_size``; only a process given ``checkpoint`` writes one, and only rank 0 measures
    test accuracy (the others record ``None``). The epoch losses are summed over the processes.
    """
    check_world(config, world)
    every_steps = _check_every("checkpoint_steps", checkpoint_steps, int)
    every_seconds = _check_every("checkpoint_seconds", checkpoint_seconds, float)
    path = None if checkpoint is None else Path(checkpoint)
    info = jsonable(dict(checkpoint_info or {}))
    resume = read_checkpoint(resume_from) if resume_from is not None else None
    device = rank_device(resolve_device(config.device), world)
    gen = seed_everything(config.seed)
    model.to(device)
    # channels_last lets the CPU kernels for batch norm and pooling run ~1.5x faster (measured on
    # the Fashion-MNIST CNN with one thread); the model is returned in the default layout.
    memory_format = torch.channels_last if device.type == "cpu" and _has_conv(model) else torch.contiguous_format
    model.to(memory_format=memory_format)
    opt = OPTIMIZERS[config.optimizer](model.parameters(), config.lr, config.weight_decay)
    n = len(data.x_train)
    bs = config.batch_size
    steps_per_epoch = math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    history: dict[str, list[float | None]] = {"loss": [], "test_accuracy": []}
    identity = _identity(model, config, n, world)
    # Where training stands, replaced as a whole so that an interrupt sees one consistent value:
    # (epoch, batch index in it, the epoch's batch order, loss sum and sample count of the epoch so far).
    cursor: tuple[int, int, torch.Tensor | None, float, int] = (0, 0, None, 0.0, 0)
    elapsed = 0.0
    if resume is not None:
        cursor, elapsed, history = _restore(resume, None if resume_from is None else Path(resume_from), identity, model,
                                            opt, sched, gen, device, steps_per_epoch)
    net = data_parallel(model, device, world)
    # One bar over all batches: a Fashion-MNIST epoch takes tens of seconds on a CPU, too long
    # for a bar that only moves once per epoch.
    bar = progress_bar(total=config.epochs * steps_per_epoch, desc=f"train {type(model).__name__}", enabled=progress)
    bar.update(cursor[0] * steps_per_epoch + cursor[1])
    t0 = time.perf_counter() - elapsed

    def position() -> tuple[int, int]:
        """Batches trained and epochs recorded: what a checkpoint written now would hold."""
        epoch, batch = cursor[0], cursor[1]
        return epoch * steps_per_epoch + batch, min(len(history["loss"]), len(history["test_accuracy"]))

    saved_pos, saved_at = position(), time.perf_counter()

    def save(rng: dict[str, Any]) -> None:
        nonlocal saved_pos, saved_at
        if path is None:
            return
        epoch, batch, perm, total, seen = cursor
        done = min(len(history["loss"]), len(history["test_accuracy"]))
        if done > epoch:  # the epoch's results are recorded: the next epoch starts here
            epoch, batch, perm, total, seen = done, 0, None, 0.0, 0
        step = epoch * steps_per_epoch + batch
        state = {"step": step, "epoch": epoch, "batch": batch, "epoch_loss_sum": total, "epoch_seen": seen,
                 "elapsed": time.perf_counter() - t0, "history": {k: v[:done] for k, v in history.items()},
                 "scheduler": sched.state_dict(), "identity": identity, "info": info}
        write_training_checkpoint(path, {"model": model.state_dict()}, opt, rng, state,
                                  extra=None if perm is None else {"perm": perm})
        saved_pos, saved_at = position(), time.perf_counter()
        log.debug("checkpoint of epoch %d, batch %d written to %s", epoch, batch, path)

    def due() -> bool:
        pos = position()
        step = pos[0]
        return path is not None and pos > saved_pos and (
            (every_steps is not None and step % every_steps == 0)
            or (every_seconds is not None and time.perf_counter() - saved_at >= every_seconds))

    # ``snapshot`` is what a step changes before it commits (random states, batch-norm buffers), taken at the
    # cursor it starts from; ``phase`` says how far the step got ("commit": the weights may be half updated).
    snapshot: tuple[Any, dict[str, Any], list[torch.Tensor]] | None = None
    phase = "boundary"
    try:
        while cursor[0] < config.epochs:
            if due():
                save(rng_state(gen, device))
            epoch, batch, perm, total, seen = cursor
            phase = "boundary"
            if path is not None:
                snapshot = (cursor, rng_state(gen, device), [b.detach().clone() for b in model.buffers()])
            phase = "compute"
            if perm is None:  # an epoch starts: draw its batch order
                cursor = (epoch, 0, pad(torch.randperm(n, generator=gen), world), 0.0, 0)
                continue
            if batch < steps_per_epoch:
                model.train()
                if world.distributed:
                    torch.manual_seed(step_seed(config.seed, epoch, batch, world.rank))
                idx = shard(perm[batch * bs : (batch + 1) * bs], world)
                if len(idx) >= 2:  # batch norm cannot normalise a single sample in train mode (every rank agrees)
                    x = data.x_train[idx].to(device).contiguous(memory_format=memory_format)
                    y = data.y_train[idx].to(device)
                    if config.adv_eps > 0:
                        x = pgd_attack(model, x, y, config.adv_eps, config.adv_steps, gen)
                    loss = F.cross_entropy(net(x), y)
                    # summed over the ranks, so that every rank sees the same loss and stops together
                    loss_sum, count = all_reduce_sum([loss.item() * len(idx), float(len(idx))], world)
                    if not math.isfinite(loss_sum):
                        raise TrainingDivergedError(f"Classifier loss became {loss_sum / count}; lower the learning rate (lr={config.lr}).")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    phase = "commit"
                    opt.step()
                    sched.step()
                    total, seen = total + loss_sum, seen + int(count)
                cursor = (epoch, batch + 1, perm, total, seen)
                bar.update(1)
                continue
            # the epoch's batches are done: evaluation changes nothing a checkpoint holds
            measured = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
            acc = evaluate_classifier(model, data.x_test, data.y_test) if measured and world.is_main else None
            mean = total / max(seen, 1)
            history["loss"].append(mean)
            history["test_accuracy"].append(acc)
            cursor = (epoch + 1, 0, None, 0.0, 0)
            if acc is not None:
                bar.set_postfix(epoch=epoch + 1, loss=f"{mean:.3f}", test_acc=f"{acc:.3f}")
                log.info("epoch %d/%d: loss %.4f, test accuracy %.4f", epoch + 1, config.epochs, mean, acc)
        if world.distributed:  # each rank updated the statistics from its share: every rank keeps their mean
            del net
            average_buffers(model, world)
        if path is not None and position() > saved_pos:  # a resume goes straight to what follows
            save(rng_state(gen, device))
    except KeyboardInterrupt:
        if path is not None:
            _save_on_interrupt(phase, snapshot, cursor, model, gen, device, save, saved_pos[0], path)
        raise
    finally:
        bar.close()
        model.to(memory_format=torch.contiguous_format)
    seconds = time.perf_counter() - t0
    log.info("trained %s in %.1fs", type(model).__name__, seconds)
    model.eval()
    return history, seconds


def _save_on_interrupt(phase: str, snapshot: Any, cursor: Any, model: Classifier, gen: torch.Generator,
                       device: torch.device, save: Any, saved_step: int, path: Path) -> None:
    """Write the checkpoint of the last consistent point, if the interrupt left one to write."""
    started_here = snapshot is not None and snapshot[0] is cursor  # the cursor moves last, once a step is whole
    if started_here and phase == "commit":  # the weights may be half updated: keep the checkpoint on disk
        log.warning("Interrupted while updating the weights; %s keeps the checkpoint of batch %d.", path, saved_step)
        return
    rng = rng_state(gen, device)
    if started_here and phase == "compute":  # rewind what the unfinished step changed; it is redone on resume
        _, rng, buffers = snapshot
        with torch.no_grad():
            for b, old in zip(model.buffers(), buffers):
                b.copy_(old)
    save(rng)
    log.warning("Interrupted in epoch %d at batch %d; the checkpoint %s resumes from there.", cursor[0] + 1, cursor[1], path)


def _restore(resume: tuple[dict[str, torch.Tensor], dict[str, Any]], path: Path | None, identity: dict[str, Any],
             model: Classifier, opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator, device: torch.device,
             steps_per_epoch: int) -> tuple[tuple[int, int, torch.Tensor | None, float, int], float, dict[str, list[float]]]:
    """Load a checkpoint into the training's objects; returns the cursor, the elapsed seconds and the history."""
    tensors, state = resume
    theirs = state.get("identity") or {}
    if theirs != identity:
        diff = changed_fields(identity, theirs)
        raise ResumeRefusedError(f"The checkpoint {path} was written by training with another {', '.join(diff)}; resume it with "
                             "the same model, config and data, or start afresh without it.")
    try:
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if not 0 <= batch <= steps_per_epoch:
            raise ValueError(f"batch {batch} outside [0, {steps_per_epoch}]")
        restore_training_state(tensors, state, {"model": model}, opt, gen, device)
        sched.load_state_dict(state["scheduler"])
        perm = tensors["perm"] if "perm" in tensors else None
        if perm is None and batch > 0:
            raise ValueError("no batch order for a position inside an epoch")
        cursor = (epoch, batch, perm, float(state["epoch_loss_sum"]), int(state["epoch_seen"]))
        history = {k: [float(v) for v in state["history"][k]] for k in ("loss", "test_accuracy")}
        elapsed = float(state["elapsed"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ResumeRefusedError(f"The checkpoint {path} does not fit this training ({exc}); start afresh without it.") from None
    log.info("resuming from epoch %d, batch %d of %s", epoch + 1, batch, path)
    return cursor, elapsed, history


def _has_conv(model: torch.nn.Module) -> bool:
    """Whether ``model`` has 2-d convolutions (the only layers channels_last speeds up)."""
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Argmax labels of ``x`` in eval mode, batched (device taken from the model)."""
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    out = [model(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def evaluate_classifier(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of ``model`` on ``(x, y)``."""
    if len(x) == 0:
        raise ValueError("Cannot evaluate on an empty set.")
    return float((predict(model, x) == y).float().mean())
