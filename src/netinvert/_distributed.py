"""Data-parallel training under ``torchrun``: the process group, the shard of each batch, rank 0's word.

``torchrun --nproc_per_node N ...`` starts N copies of a command and gives each ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. A workflow that supports data
parallelism enters :func:`process_group`, which initialises the group from those variables (gloo on
the CPU, nccl on GPUs, one GPU per local rank), or finds one the caller initialised, or, without
either, yields the one-process :class:`World` so that single-process runs take exactly the code path
they took before.

Sharding follows :class:`torch.utils.data.DistributedSampler`: every rank draws the same seeded
permutation, pads it by wrapping to a multiple of the world size, and takes every ``world``-th index
of each global batch starting at its rank (:func:`shard`). That is the sampler's split with a
per-rank batch of ``batch_size / world``, so ``batch_size`` keeps meaning the global batch, the step
count per epoch is the single-process one, and the gradient DDP averages is the gradient of the
whole global batch: equal epochs are equal total steps, and the learning-rate schedule is the same.

Only rank 0 writes: run folders, checkpoints and printed results. :func:`rank0_first` runs the
checks and preparation that may refuse the run on rank 0 and hands the outcome (or the refusal) to
every rank, so a bad ``--out`` stops all processes with the same message instead of leaving the
others waiting for a collective call that never comes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch

__all__ = ["World", "SINGLE", "env_world_size", "current_world", "process_group", "rank_device", "pad", "shard",
           "rank0_first", "on_rank0", "broadcast_object", "all_reduce_sum", "step_seed", "data_parallel", "average_buffers"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a collective call may wait for the other ranks before the run fails (a rank that died
#: otherwise leaves the others waiting forever).
TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class World:
    """Where this process stands: ``size`` processes, this one ``rank`` (``local_rank`` on its node).

    ``backend`` is the process group's (``"gloo"``, ``"nccl"``), ``None`` for one process.
    """

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes (rank 0)."""
        return self.rank == 0

    def to_dict(self) -> dict[str, Any]:
        return {"world_size": self.size, "backend": self.backend}


#: The world of a plain single-process run.
SINGLE = World()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"The environment variable {name} must be an int (torchrun sets it). Got {value!r} instead.") from None


def env_world_size() -> int:
    """``$WORLD_SIZE`` (1 when unset): how many processes torchrun started."""
    return _env_int("WORLD_SIZE", 1)


def current_world() -> World:
    """The world of an initialised process group, else :data:`SINGLE`."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return World(dist.get_world_size(), dist.get_rank(), _env_int("LOCAL_RANK", dist.get_rank()), dist.get_backend())


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[tuple[World, torch.device]]:
    """The world this process trains in, and the device it trains on.

    An already initialised group (a test's, or a caller's own) is used as is and left open. Otherwise
    ``WORLD_SIZE`` > 1 initialises one from torchrun's variables, gloo on the CPU and nccl on CUDA, and
    destroys it on exit; a CUDA device becomes ``cuda:LOCAL_RANK``. With neither, the single world and
    ``device`` unchanged: single-process runs are untouched.

    Raises
    ------
    ValueError
        If torchrun's variables are inconsistent (``RANK`` outside ``[0, WORLD_SIZE)``) or this build of
        torch has no ``torch.distributed``.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        world = current_world()
        yield world, _rank_device(device, world)
        return
    size = env_world_size()
    if size <= 1:
        yield SINGLE, device
        return
    rank, local = _env_int("RANK", -1), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < size:
        raise ValueError(f"RANK={rank} is outside [0, WORLD_SIZE={size}); start the processes with torchrun "
                         "(torchrun --nproc_per_node N ...), which sets both.")
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 asks for data-parallel training, but this torch build has no torch.distributed.")
    backend = "nccl" if device.type == "cuda" else "gloo"
    world = World(size, rank, local, backend)
    device = _rank_device(device, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT_S))
    log.info("rank %d of %d (%s) on %s", rank, size, backend, device)
    try:
        yield world, device
        # every rank is done with the group before any tears it down: gloo aborts a process whose peer
        # destroys the group under it (seen as "terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _rank_device(device: torch.device, world: World) -> torch.device:
    """One GPU per local rank; the CPU is shared."""
    if device.type == "cuda" and world.distributed and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's share of a global batch of indices: every ``world.size``-th from ``world.rank``.

    ``batch`` comes from a permutation padded by :func:`pad` to a multiple of the world size, so
    every rank gets as many indices as the others (DDP needs every rank to take every step).
    """
    return batch if not world.distributed else batch[world.rank :: world.size]


def pad(perm: torch.Tensor, world: World) -> torch.Tensor:
    """``perm`` extended by its own first indices to a multiple of the world size (DistributedSampler's
    padding with ``drop_last=False``)."""
    extra = -len(perm) % world.size
    if not extra:
        return perm
    return torch.cat([perm, perm.repeat(extra // max(len(perm), 1) + 1)[:extra]])


def broadcast_object(value: T, world: World) -> T:
    """Rank 0's ``value`` on every rank (picklable values)."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    box = [value if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def all_reduce_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sums of ``values`` over the ranks (float64, on the CPU: gloo or the nccl device)."""
    if not world.distributed:
        return values
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if world.backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def rank0_first(fn: Callable[[], T], world: World) -> T:
    """Run ``fn`` on rank 0 and give its value to every rank; if it raises, every rank raises.

    Rank 0 re-raises its own exception; the others raise :class:`RuntimeError` quoting it, so no rank
    is left waiting for a collective call of a run that was refused.
    """
    if not world.distributed:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    error: BaseException | None = None
    if world.is_main:
        try:
            outcome = (True, fn())
        except Exception as exc:  # handed to the other ranks, then re-raised unchanged below
            error = exc
            outcome = (False, f"{type(exc).__name__}: {exc}")
    ok, value = broadcast_object(outcome, world)
    if error is not None:
        raise error
    if not ok:
        raise RuntimeError(f"Rank 0 refused the run: {value}")
    return value


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device this rank computes on: ``cuda:LOCAL_RANK`` for an unindexed CUDA device, else ``device``."""
    return _rank_device(device, world)


def on_rank0(main: Callable[[], T], others: Callable[[], Any], world: World) -> T:
    """Rank 0 runs ``main`` (training and writing), the others ``others`` (training only); every rank
    returns ``main``'s value.

    If ``main`` raises after the others finished, they raise :class:`RuntimeError` quoting it rather
    than returning a result that was never written.
    """
    if world.distributed and not world.is_main:
        others()
    return rank0_first(main, world)  # runs ``main`` on rank 0 alone; the others receive its value


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The seed of one rank's per-step randomness (dropout masks, augmentations) in a distributed run.

    Every rank starts from the same seed (the same initial weights), so without this the ranks would
    draw the same dropout masks for their different samples. A pure function of the position also
    makes a resumed distributed run draw what the uninterrupted one drew, although a checkpoint
    holds rank 0's random state only.
    """
    return ((((seed * 1_000_003) + epoch) * 1_000_003 + step) * 1_009 + rank) % (2**63)


def data_parallel(module: torch.nn.Module, device: torch.device, world: World) -> torch.nn.Module:
    """``module`` itself for one process; DistributedDataParallel around it for several (it broadcasts
    rank 0's weights and buffers, and averages the gradients over the ranks in each backward)."""
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


@torch.no_grad()
def average_buffers(module: torch.nn.Module, world: World) -> None:
    """Replace ``module``'s floating-point buffers (batch-norm running statistics) by their mean over the ranks.

    DistributedDataParallel hands rank 0's buffers to every rank before each forward, and each rank then
    updates them from its own share of the batch, so after the last step the ranks hold different
    statistics; their mean is the estimate from the whole last global batch, the same on every rank.
    """
    if not world.distributed:
        return
    import torch.distributed as dist

    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b.div_(world.size)
