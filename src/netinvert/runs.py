"""Run folders: every command writes its config, metrics and artefacts into one folder.

A run folder holds ``card.json`` (what was run, with which parameters and versions, and its
metrics) and, for models, ``weights.safetensors``. Writes are atomic (temp file + rename) so an
interrupted run never leaves a half-written card or checkpoint behind.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .exceptions import ResumeRefusedError, RunExistsError, RunFormatError, RunLockedError

__all__ = [
    "CARD_NAME",
    "WEIGHTS_NAME",
    "atomic_write_bytes",
    "write_json",
    "read_json",
    "write_card",
    "read_card",
    "save_weights",
    "load_weights",
    "versions",
    "jsonable",
    "drop_seconds",
    "file_sha256",
    "weights_sha256",
    "check_out",
    "staged_run",
    "before_commit",
    "partial_dir",
    "paths_overlap",
]

CARD_NAME = "card.json"
WEIGHTS_NAME = "weights.safetensors"


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run folders are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(obj: Any) -> Any:
    """Turn tensors, numpy values, paths and dataclass-like results into plain JSON values.

    Non-finite floats become ``None``: JSON has no NaN, and a bare ``NaN`` in a metrics file breaks
    every strict reader; the card or metrics that hold such a value say why it is missing.
    """
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return jsonable(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):  # numpy scalars
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def drop_seconds(value: Any) -> Any:
    """``value`` as :func:`jsonable` writes it, less every key that names a measured time (``*seconds*``).

    Two runs of the same query (serial and ``jobs=2``, or on a Dask cluster) promise the same answer but
    for the seconds they measured; this is what to compare to check that promise.
    """
    value = jsonable(value)
    if isinstance(value, dict):
        return {k: drop_seconds(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [drop_seconds(v) for v in value]
    return value


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (tensors, numpy values and paths converted)."""
    text = json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, text.encode())


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunFormatError(f"{path} is not valid JSON ({exc}). Re-run the command that wrote it.") from None


def write_card(run_dir: str | Path, card: Mapping[str, Any]) -> Path:
    """Write ``card.json`` into ``run_dir``, adding library versions."""
    full = dict(card)
    full.setdefault("versions", versions())
    return write_json(Path(run_dir) / CARD_NAME, full)


def read_card(run_dir: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read ``card.json`` from a run folder and check that ``required`` keys are present."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run folder {run_dir} does not exist.")
    card = read_json(run_dir / CARD_NAME)
    if not isinstance(card, dict):
        raise RunFormatError(f"{run_dir / CARD_NAME} must hold a JSON object.")
    missing = [k for k in required if k not in card]
    if missing:
        raise RunFormatError(f"{run_dir / CARD_NAME} lacks {', '.join(missing)}; it was not written by this command.")
    return card


def save_weights(path: str | Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically save a state dict as safetensors (no pickle, safe to share)."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    return atomic_write_bytes(path, save(tensors, metadata=dict(metadata or {})))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors state dict; a corrupt file raises :class:`UnsafeCheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .exceptions import UnsafeCheckpointError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnsafeCheckpointError(f"{path} is not a readable safetensors file ({exc}).") from None


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on, for the card."""
    import numpy

    from . import __version__

    out = {"netinvert": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
           "python": platform.python_version()}
    return out


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks: cards record it so a changed weights file is noticed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(source: str | Path | None) -> str | None:
    """sha256 of the weights a source holds: a run folder's ``weights.safetensors``, or a model file itself;
    ``None`` where there is none. Cards and benchmark rows record it to say which model they used."""
    if source is None:
        return None
    path = Path(source)
    path = path / WEIGHTS_NAME if path.is_dir() else path
    return file_sha256(path) if path.is_file() else None


def paths_overlap(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are the same folder or one lies inside the other (links resolved)."""
    a, b = Path(a).absolute().resolve(), Path(b).absolute().resolve()
    return a == b or a in b.parents or b in a.parents


def check_out(out: str | Path, *, force: bool = False, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Check that a run can be written to ``out`` before any work starts, and return it resolved.

    Refused, each with one sentence that says how to fix it: ``out`` being (or lying inside, or
    holding) one of the ``inputs`` (a run never writes into the run it reads), ``out`` or one of
    its parents being a file, an unwritable parent folder, and an ``out`` that already holds
    something unless ``force`` (the old folder is replaced only once the new run is complete).
    """
    out = Path(out).absolute()
    for inp in inputs:
        if inp is not None and paths_overlap(out, inp):
            raise ValueError(f"The output folder {out} is or overlaps the input {inp}; a run never writes into "
                             f"the run it reads. Pass another --out.")
    if out.exists() and not out.is_dir():
        raise RunExistsError(f"The output {out} is a file, not a folder; pass another --out.")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"Cannot create {out}: {parent} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"Cannot create {out}: no permission to write in {parent}.")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise RunExistsError(f"{out} already holds files; pass --force (force=True) to replace it once the new "
                                 f"run is complete, or choose another --out.")
        resolved, cwd = out.resolve(), Path.cwd().resolve()
        if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
            raise RunExistsError(f"--force will not replace {out}: it is the working directory, one above it, or the home "
                                 f"folder. Pass a run folder as --out.")
    return out


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``out`` with ``flock``: a second writer is refused at once.

    The kernel releases the lock when its holder dies (even by SIGKILL), so a stale lock file is simply
    taken over; the holder's pid in the file only serves the message. The file is removed while still
    held, and a process that locked a file just removed that way tries again on the new one.
    """
    lock = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunLockedError(f"Another process (pid {holder}) is writing {out}; wait for it or choose another --out.") from None
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # its holder removed that file as we locked it: lock the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back for the few renames that put a finished run in place."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _commit(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out``; an old ``out`` is put back if that fails."""
    with _signals_deferred():
        old = None
        if out.is_dir():
            if any(out.iterdir()):
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
                os.replace(out, old / "run")
            else:
                out.rmdir()
        try:
            os.replace(staging, out)
        except BaseException:
            if old is not None:
                os.replace(old / "run", out)
                old.rmdir()
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


#: The ``(out, write)`` of the innermost :func:`before_commit` block, read by the ``staged_run`` of that ``out``.
_BEFORE_COMMIT: contextvars.ContextVar[tuple[Path, Callable[[Path], object]] | None] = contextvars.ContextVar(
    "netinvert_before_commit", default=None)


@contextlib.contextmanager
def before_commit(out: str | Path, write: Callable[[Path], object]) -> Iterator[None]:
    """Within this block, the :func:`staged_run` of ``out`` calls ``write(staging)`` just before its rename.

    Why: a file that describes a run from outside the workflow that writes it (the CLI's ``config.toml``)
    must be part of the same atomic rename, so that no run ever appears without it, while each workflow
    owns its staging folder. ``write`` is not called for a run that fails, nor for other ``out`` folders.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with before_commit(root / "run", lambda tmp: (tmp / "note.txt").write_text("hi")):
    ...     with staged_run(root / "run") as tmp:
    ...         _ = (tmp / "card.json").write_text("{}")
    >>> sorted(p.name for p in (root / "run").iterdir())
    ['card.json', 'note.txt']
    """
    token = _BEFORE_COMMIT.set((Path(out).absolute(), write))
    try:
        yield
    finally:
        _BEFORE_COMMIT.reset(token)


def partial_dir(out: str | Path) -> Path:
    """Where an unfinished run of ``out`` is written: a hidden sibling, kept after an interrupt for ``resume``."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.partial"


@contextlib.contextmanager
def staged_run(out: str | Path, *, force: bool = False, resume: bool = False, keep_on_interrupt: bool = False,
               inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Write a run into a hidden sibling of ``out`` and rename it into place when complete.

    Yields the staging folder (:func:`partial_dir`). On a normal exit it becomes ``out`` (an old
    ``out`` is replaced only with ``force``, and only then; Ctrl-C and SIGTERM wait for those renames).
    On an error it is removed, so ``out`` holds either one whole run or what it held before. With
    ``keep_on_interrupt`` (workflows that checkpoint) an interrupt (Ctrl-C, or SIGTERM turned into
    :class:`KeyboardInterrupt` by the CLI) keeps it, with the checkpoint the work wrote into it, for
    ``resume=True``, which continues in it (so does a :class:`~netinvert.exceptions.ResumeRefusedError`: a
    checkpoint the work refused to resume, e.g. one written on another device, stays for the right call); without ``resume`` a left-over staging folder is cleared
    first. A lock refuses a second writer of the same ``out``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with staged_run(root / "run") as tmp:
    ...     _ = (tmp / "card.json").write_text("{}")
    >>> sorted(p.name for p in (root / "run").iterdir())
    ['card.json']
    """
    inputs = list(inputs)
    out = check_out(out, force=force, inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        check_out(out, force=force, inputs=inputs)  # another writer may have finished while we waited
        staging = partial_dir(out)
        if staging.exists() and not resume:
            shutil.rmtree(staging)
        staging.mkdir(mode=0o755, exist_ok=True)
        keep = False
        try:
            yield staging
        except (KeyboardInterrupt, ResumeRefusedError):  # a refused resume keeps the checkpoint it refused
            keep = keep_on_interrupt
            raise
        else:
            hook = _BEFORE_COMMIT.get()
            if hook is not None and hook[0] == out:
                hook[1](staging)
            _commit(staging, out)
        finally:
            if not keep and staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
