"""Run folders: every command writes its config, metrics and artefacts into one folder.

A run folder holds ``card.json`` (what was run, with which parameters and versions, and its
metrics) and, for models, ``weights.safetensors``. Writes are atomic (temp file + rename) so an
interrupted run never leaves a half-written card or checkpoint behind.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .exceptions import RunFormatError

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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays
        return obj.tolist()
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (tensors, numpy values and paths converted)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n"
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
