"""Training checkpoints that resume exactly: one safetensors file, no pickle.

A checkpoint is ONE file, written atomically (temp file + rename, :func:`netinvert.runs.save_weights`), so an
interrupted write never leaves a torn checkpoint behind. Its tensors are named by prefix:

``generator.*``
    the generator's state dict (weights and batch-norm buffers);
``ema.*``
    the EMA copy's state dict, when the fit keeps one;
``good.*``
    the in-memory "last good" generator a diverged fit falls back to;
``optimizer.<i>.<key>``
    each tensor of the optimiser's per-parameter state (Adam: ``step``, ``exp_avg``, ``exp_avg_sq``), ``i`` the
    parameter's index in the optimiser's ``param_groups`` (the flattening ``torch.optim`` itself uses);
``rng.torch``, ``rng.cuda``, ``rng.generator``, ``rng.numpy``
    the global torch CPU generator, the CUDA one of the training device (when used), the ``torch.Generator``
    the fit owns, and numpy's MT19937 key (as int64).

Everything else is JSON in the file's metadata (safetensors metadata is a ``str -> str`` map): ``format``
(:data:`CHECKPOINT_FORMAT`), ``version`` and ``state``, a JSON object with the step, the elapsed seconds, the
history, the optimiser's ``param_groups`` and non-tensor state, numpy's and python ``random``'s remaining state,
what the checkpoint was made by (``identity``) and what the caller recorded (``info``, e.g. a pipeline's config).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .exceptions import ResumeRefusedError, RunExistsError, RunFormatError, UnsafeCheckpointError
from .runs import jsonable, partial_dir, save_weights

log = logging.getLogger(__name__)

__all__ = ["CheckpointPlan", "checkpoint_at_interrupt", "tensors_sha256", "check_resume", "resume_point", "discard_checkpoint", "write_training_checkpoint", "restore_training_state",
           "changed_fields", "CHECKPOINT_NAME", "CHECKPOINT_FORMAT", "write_checkpoint", "read_checkpoint", "read_checkpoint_state",
           "rng_state", "rng_to_checkpoint", "restore_rng", "flatten_optimizer", "unflatten_optimizer", "prefixed", "strip_prefix"]

#: File name of a fit's checkpoint inside a run's staging folder.
CHECKPOINT_NAME = "checkpoint.safetensors"
#: ``format`` entry of a checkpoint's metadata.
CHECKPOINT_FORMAT = "netinvert-checkpoint"
_VERSION = "1"


def write_checkpoint(path: str | Path, tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> Path:
    """Atomically write ``tensors`` and the JSON ``state`` as one safetensors file."""
    meta = {"format": CHECKPOINT_FORMAT, "version": _VERSION, "state": json.dumps(state)}
    return save_weights(path, tensors, metadata=meta)


def read_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """The JSON ``state`` of a checkpoint, without loading its tensors."""
    return _read(path, tensors=False)[1]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON ``state`` of a checkpoint written by :func:`write_checkpoint`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    UnsafeCheckpointError
        If it is not a readable safetensors file.
    RunFormatError
        If it is not a netinvert checkpoint of this version.
    """
    return _read(path, tensors=True)


def _read(path: str | Path, *, tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            out = {k: fh.get_tensor(k) for k in fh.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnsafeCheckpointError(f"{path} is not a readable checkpoint ({exc}); delete it to start afresh.") from None
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != _VERSION:
        raise RunFormatError(f"{path} is not a netinvert checkpoint of version {_VERSION} (format {meta.get('format')!r}, "
                             f"version {meta.get('version')!r}); delete it to start afresh.")
    try:
        state = json.loads(meta["state"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise RunFormatError(f"{path} has no readable state ({exc}); delete it to start afresh.") from None
    return out, state


def prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every key prefixed by ``prefix + '.'``."""
    return {f"{prefix}.{k}": v for k, v in state.items()}


def strip_prefix(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix + '.'``, without it."""
    head = prefix + "."
    return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}


# ---------------------------------------------------------------------------------------------------------- RNG
def rng_state(generator: torch.Generator | None = None, device: torch.device | None = None) -> dict[str, Any]:
    """Every random state a fit draws from: torch CPU (and CUDA of ``device``), ``generator``, numpy, ``random``."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if generator is not None:
        state["generator"] = generator.get_state()
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def rng_to_checkpoint(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split :func:`rng_state`'s value into tensors (``rng.*``) and JSON."""
    tensors = {f"rng.{k}": state[k] for k in ("torch", "generator", "cuda") if k in state}
    name, keys, pos, has_gauss, cached = state["numpy"]
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = state["python"]
    meta = {"numpy": {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "state": list(internal), "gauss_next": gauss_next}}
    return tensors, meta


def restore_rng(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], generator: torch.Generator | None = None,
                device: torch.device | None = None) -> None:
    """Set every random state from a checkpoint (the inverse of :func:`rng_to_checkpoint`)."""
    torch.set_rng_state(tensors["rng.torch"])
    if generator is not None:
        generator.set_state(tensors["rng.generator"])
    if device is not None and device.type == "cuda":
        if "rng.cuda" not in tensors:
            raise ResumeRefusedError("The checkpoint was written on the CPU and holds no CUDA random state; resume it with --device cpu.")
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    n = meta["numpy"]
    np.random.set_state((n["name"], tensors["rng.numpy"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# ---------------------------------------------------------------------------------------------------------- optimiser
def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's state dict as tensors ``optimizer.<i>.<key>`` and JSON (``param_groups``, non-tensor state)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                other.setdefault(str(index), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "state": other}


def unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict :func:`flatten_optimizer` split, for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in strip_prefix("optimizer", tensors).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, entry in meta["state"].items():
        state.setdefault(int(index), {}).update(entry)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def check_resume(out: str | Path, *, force: bool, resume: bool) -> None:
    """With ``resume``, refuse an ``out`` that already holds a run (unless ``force``): there is nothing to continue."""
    out = Path(out).absolute()
    if resume and not force and out.is_dir() and any(out.iterdir()):
        raise RunExistsError(f"{out} is already complete; use --force to redo it (force=True), or choose another --out.")


def resume_point(out: str | Path, info: Mapping[str, Any], *, resume: bool, force: bool = False) -> Path | None:
    """The checkpoint in ``out``'s staging folder that ``resume`` continues from, after checking it is this run's.

    ``info`` is what the workflow records in its checkpoints (its config and the fingerprints of its inputs);
    a checkpoint that recorded anything else is refused, naming the fields that differ (a nested config
    entry by its dotted name). Checked before the staging folder is entered, so a refusal leaves it (and its
    checkpoint) untouched. Without ``resume`` a left-over checkpoint (hours of work, perhaps) is refused
    unless ``force``, which discards it.
    """
    path = partial_dir(out) / CHECKPOINT_NAME
    if not resume:
        if path.is_file():
            if not force:
                raise RunExistsError(f"An interrupted run of {Path(out)} left a checkpoint in {path.parent}; pass --resume "
                                     f"(resume=True) to continue it, or --force (force=True) to discard it and start afresh.")
            log.warning("Discarding the unfinished run in %s (--force).", path.parent)
        return None
    if not path.is_file():
        log.warning("No checkpoint in %s: --resume starts afresh.", path.parent)
        return None
    recorded = read_checkpoint_state(path).get("info") or {}
    want = json.loads(json.dumps(jsonable(info)))
    # Where and with how many threads a run computes does not change what it is: a run interrupted on one
    # machine may continue on another (bit-exact equality is promised for the same device and threads only).
    diff = [k for k in changed_fields(want, recorded) if k not in _NOT_IDENTITY]
    if diff:
        raise RunFormatError(f"The checkpoint {path} belongs to a run with another {', '.join(diff)}; rerun with the options of "
                             f"that run to resume it, or pass --force without --resume to discard it and start afresh.")
    log.info("Resuming the unfinished run in %s.", path.parent)
    return path


_NOT_IDENTITY = ("config.device", "config.threads")


def changed_fields(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two JSON objects (nested objects named entry by entry):
    what a refused checkpoint's message names."""
    a, b = a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += changed_fields(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}")
    return out


def discard_checkpoint(folder: str | Path) -> None:
    """Remove a finished run's checkpoint and any temp file of a checkpoint write cut short by SIGKILL.

    A workflow keeps its checkpoint until its run folder is complete, so a resume after an interrupt
    during the measuring skips the finished training; the final run folder holds no checkpoint.
    """
    folder = Path(folder)
    (folder / CHECKPOINT_NAME).unlink(missing_ok=True)
    for stray in folder.glob(f".{CHECKPOINT_NAME}.*.tmp"):  # atomic_write_bytes' temp file
        stray.unlink(missing_ok=True)


def write_training_checkpoint(path: str | Path, states: Mapping[str, Mapping[str, torch.Tensor]],
                              optimizer: torch.optim.Optimizer, rng: Mapping[str, Any], state: Mapping[str, Any],
                              extra: Mapping[str, torch.Tensor] | None = None) -> Path:
    """One training loop's checkpoint: each state dict of ``states`` under its name, the optimiser, the random
    states ``rng`` (:func:`rng_state`), ``extra`` tensors, and ``state`` (JSON) with the optimiser's and RNG's meta."""
    opt_tensors, opt_meta = flatten_optimizer(optimizer)
    rng_tensors, rng_meta = rng_to_checkpoint(rng)
    tensors = {k: v for name, sd in states.items() for k, v in prefixed(name, sd).items()}
    tensors.update({**(extra or {}), **opt_tensors, **rng_tensors})
    return write_checkpoint(path, tensors, {**state, "optimizer": opt_meta, "rng": rng_meta})


def restore_training_state(tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any], modules: Mapping[str, torch.nn.Module],
                           optimizer: torch.optim.Optimizer, generator: torch.Generator | None = None,
                           device: torch.device | None = None) -> None:
    """Load what :func:`write_training_checkpoint` wrote back into ``modules`` (by name), the optimiser and every
    random state."""
    for name, module in modules.items():
        module.load_state_dict(strip_prefix(name, tensors))
    optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))
    restore_rng(tensors, state["rng"], generator, device)


@dataclass(frozen=True)
class CheckpointPlan:
    """Where and how often a fit writes its checkpoint, and what it records there for the caller."""

    path: Path
    every_steps: int | None
    every_seconds: float | None
    info: Any

    def due(self, step: int, since_last: float) -> bool:
        return ((self.every_steps is not None and step % self.every_steps == 0)
                or (self.every_seconds is not None and since_last >= self.every_seconds))


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """sha256 of the tensors' bytes in order: what a checkpoint records of the data it was trained on, so that it is
    resumed on that data only."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def checkpoint_at_interrupt(phase: str, save: Callable[[Any], None], now: Callable[[], Any],
                            step_start: Callable[[], Any], path: Path, at: int, kept: int, unit: str = "step") -> None:
    """What a fit interrupted in ``phase`` writes: at a step ``boundary`` the state ``now()`` returns; inside a
    step (``compute``) the state the step started from (``step_start()`` rewinds what the step changed and returns
    its random states; the step is redone on resume); while the weights are updated (``commit``) nothing, as they
    may be half updated and the checkpoint on disk (``kept``) is the last consistent state."""
    if phase == "commit":
        log.warning("Interrupted while updating the weights of %s %d; %s keeps %s %d.", unit, at, path, unit, kept)
        return
    save(step_start() if phase == "compute" else now())
    log.warning("Interrupted at %s %d; the checkpoint %s resumes from there.", unit, at, path)
