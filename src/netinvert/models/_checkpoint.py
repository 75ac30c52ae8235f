"""Saving classifiers into run folders and loading them back (no pickles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..exceptions import RunFormatError, UnsafeCheckpointError
from ..runs import CARD_NAME, WEIGHTS_NAME, load_weights, read_card, save_weights, write_card
from ._base import Classifier, build_model

__all__ = ["save_classifier", "load_classifier_run"]


def save_classifier(model: Classifier, run_dir: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write ``weights.safetensors`` and ``card.json`` (architecture, parameters, ``card`` extras)."""
    run_dir = Path(run_dir)
    name = getattr(model, "registry_name", None) or _registry_name(model)
    save_weights(run_dir / WEIGHTS_NAME, model.state_dict(), metadata={"model": name})
    full = {"kind": "classifier", "model": name, "model_params": model.get_params(), **(card or {})}
    write_card(run_dir, full)
    return run_dir


def _registry_name(model: Classifier) -> str:
    from ._base import MODELS

    for name in MODELS.names():
        if MODELS.get(name) is type(model):
            return name
    raise RunFormatError(f"{type(model).__name__} is not a registered model; register it with register_model().")


def load_classifier_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a classifier from a run folder written by :func:`save_classifier`.

    Returns the model in eval mode and its card.
    """
    run_dir = Path(run_dir)
    card = read_card(run_dir, required=("model", "model_params"))
    if card.get("kind", "classifier") != "classifier":
        raise RunFormatError(f"{run_dir / CARD_NAME} describes a {card.get('kind')!r} run, not a classifier.")
    model = build_model(card["model"], **card["model_params"])
    state = load_weights(run_dir / WEIGHTS_NAME)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UnsafeCheckpointError(f"{run_dir / WEIGHTS_NAME} does not match the architecture in its card: {exc}") from None
    return model.to(device).eval(), card
