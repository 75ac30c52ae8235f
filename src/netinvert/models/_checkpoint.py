"""Saving classifiers into run folders and loading them back (no pickles).

A classifier run folder is ``card.json`` (the registry name of the architecture, its
``get_params()``, the dataset and metrics) plus ``weights.safetensors`` (the state dict). The
architecture is rebuilt from the registry and the card, so loading never executes code stored in
a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..exceptions import RunFormatError
from ..runs import CARD_NAME, WEIGHTS_NAME, file_sha256, load_weights, read_card, save_weights, write_card
from ._base import MODELS, Classifier, build_model

__all__ = ["save_classifier", "load_classifier_run"]


def save_classifier(model: Classifier, run_dir: str | Path, card: Mapping[str, Any] | None = None) -> Path:
    """Write ``weights.safetensors`` and ``card.json`` into ``run_dir``.

    Parameters
    ----------
    model : Classifier
        A registered zoo model (its registry name and ``get_params()`` go into the card).
    run_dir : path
        Created if missing; both files are written atomically.
    card : mapping, optional
        Extra card entries (dataset, metrics, seed, training config, ...). The card also gets
        ``weights_sha256``, the sha256 of the weights file written.

    Returns
    -------
    Path
        ``run_dir``.
    """
    run_dir = Path(run_dir)
    name = _registry_name(model)
    weights = save_weights(run_dir / WEIGHTS_NAME, model.state_dict(), metadata={"model": name})
    # The card names the exact weights it describes, so a swapped or changed file is noticed.
    full = {"kind": "classifier", "model": name, "model_params": model.get_params(), **(card or {}),
            "weights_sha256": file_sha256(weights)}
    write_card(run_dir, full)
    return run_dir


def _registry_name(model: Classifier) -> str:
    """The registry key whose factory is ``type(model)``."""
    for name in MODELS.names():
        if MODELS.get(name) is type(model):
            return name
    raise RunFormatError(f"{type(model).__name__} is not a registered model; register it with register_model().")


def load_classifier_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a classifier from a run folder written by :func:`save_classifier`.

    Returns
    -------
    model : Classifier
        In eval mode on ``device``, so predictions are deterministic.
    card : dict
        The run's card.

    Raises
    ------
    FileNotFoundError
        If the folder, its ``card.json`` or its ``weights.safetensors`` is missing (named).
    UnsafeCheckpointError
        If ``weights.safetensors`` is corrupt or truncated.
    RunFormatError
        If the card is malformed or the weights do not fit the architecture it describes.
    """
    run_dir = Path(run_dir)
    card = read_card(run_dir, required=("model", "model_params"))
    if card.get("kind", "classifier") != "classifier":
        raise RunFormatError(f"{run_dir / CARD_NAME} describes a {card.get('kind')!r} run, not a classifier.")
    params = card["model_params"]
    if not isinstance(params, dict):
        raise RunFormatError(f"{run_dir / CARD_NAME}: 'model_params' must be a JSON object.")
    try:
        model = build_model(card["model"], **params)
    except TypeError as exc:
        raise RunFormatError(f"{run_dir / CARD_NAME}: 'model_params' do not fit model {card['model']!r} ({exc}).") from None
    state = load_weights(run_dir / WEIGHTS_NAME)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RunFormatError(
            f"{run_dir / WEIGHTS_NAME} does not match the architecture in {CARD_NAME} "
            f"({card['model']!r} with {params}): {exc}"
        ) from None
    return model.to(device).eval(), card
