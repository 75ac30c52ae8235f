"""Device and seeding helpers: every command takes ``--device`` and ``--seed``."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["resolve_device", "seed_everything"]

_DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``cpu``/``cuda``/``auto`` (or a torch device) into a :class:`torch.device`.

    ``cuda`` without a GPU is an error rather than a silent fall-back, so a benchmark never
    reports CPU numbers as GPU numbers.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but no CUDA GPU is available; use --device cpu or auto.")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"The 'device' parameter must be one of {_DEVICES}. Got {device!r} instead.")


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
