"""Saving classifiers into run folders and loading them back (no pickles).

A classifier run folder is ``card.json`` (the registry name of the architecture, its
``get_params()``, the dataset and metrics) plus ``weights.safetensors`` (the state dict). The
architecture is rebuilt from the registry and the card, so loading never executes code stored in
a file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..exceptions import RunFormatError, UnsafeCheckpointError
from ..runs import CARD_NAME, WEIGHTS_NAME, file_sha256, read_card, save_weights, write_card
from ._base import MODELS, Classifier, build_model

__all__ = ["save_classifier", "load_classifier_run", "resolve_recorded_path", "path_for_card", "check_sha256", "read_weights",
           "check_finite", "registry_name"]


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
    name = registry_name(model)
    weights = save_weights(run_dir / WEIGHTS_NAME, model.state_dict(), metadata={"model": name})
    # The card names the exact weights it describes, so a swapped or changed file is noticed.
    full = {"kind": "classifier", "model": name, "model_params": model.get_params(), **(card or {}),
            "weights_sha256": file_sha256(weights)}
    write_card(run_dir, full)
    return run_dir


def registry_name(model: Classifier) -> str:
    """The registry key whose factory is ``type(model)``."""
    for name in MODELS.names():
        if MODELS.get(name) is type(model):
            return name
    raise RunFormatError(f"{type(model).__name__} is not a registered model; register it with register_model().")


def load_classifier_run(run_dir: str | Path, device: str | torch.device = "cpu", *,
                        expected_sha256: str | None = None) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a classifier from a run folder written by :func:`save_classifier`.

    Everything is checked before the model is returned: the card (an object naming a registered
    model with valid parameters), the weights file (readable safetensors whose sha256 equals the
    card's ``weights_sha256``, and ``expected_sha256`` when given), the fit of the weights to the
    architecture, and that every weight is finite.

    Parameters
    ----------
    run_dir : path
        The run folder.
    device : str or torch.device
    expected_sha256 : str, optional
        The sha256 the weights file must have (e.g. the one an inversion run recorded for its
        classifier); a different file is refused.

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
        If ``weights.safetensors`` is corrupt or truncated, changed since the card was written,
        differs from ``expected_sha256``, or holds NaN or infinite values (the tensor is named).
    RunFormatError
        If the card is malformed (unknown model, parameters that are not an object or do not fit
        the model) or the weights do not fit the architecture it describes.
    """
    run_dir = Path(run_dir)
    card_path, weights_path = run_dir / CARD_NAME, run_dir / WEIGHTS_NAME
    expected_sha256 = check_sha256(expected_sha256)
    card = read_card(run_dir, required=("model", "model_params"))
    if card.get("kind", "classifier") != "classifier":
        raise RunFormatError(f"{card_path} describes a {card.get('kind')!r} run, not a classifier.")
    name, params = card["model"], card["model_params"]
    if not isinstance(name, str) or name not in MODELS:
        raise RunFormatError(f"{card_path} names model {name!r}, which is not registered here. Valid names: "
                             f"{', '.join(MODELS.names())}. Was it written by a newer netinvert, or edited?")
    if not isinstance(params, dict):
        raise RunFormatError(f"{card_path}: 'model_params' must be a JSON object. Got {type(params).__name__} instead.")
    recorded = card.get("weights_sha256")
    if recorded is not None and (not isinstance(recorded, str) or not _SHA256.fullmatch(recorded)):
        raise RunFormatError(f"{card_path}: 'weights_sha256' must be 64 hex digits. Got {recorded!r} instead.")
    try:
        model = build_model(name, **params)
    except (TypeError, ValueError) as exc:
        raise RunFormatError(f"{card_path}: 'model_params' do not fit model {name!r} ({exc}).") from None
    state, sha = read_weights(weights_path)
    if recorded is not None and sha != recorded:
        raise UnsafeCheckpointError(
            f"{weights_path} changed since {card_path.name} was written: its sha256 is {sha}, the card records "
            f"{recorded}. The file was replaced, edited or damaged; restore it or retrain the classifier."
        )
    check_expected(weights_path, sha, expected_sha256)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RunFormatError(
            f"{weights_path} does not match the architecture in {CARD_NAME} "
            f"({name!r} with {params}): {exc}"
        ) from None
    check_finite(state, weights_path)
    return model.to(device).eval(), card


# --------------------------------------------------------------------------- integrity checks

_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_sha256(value: str | None) -> str | None:
    """``value`` as a lower-case sha256 hex digest, or None; anything else is a ValueError."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise ValueError(f"The 'expected_sha256' parameter must be None or 64 hex digits. Got {value!r} instead.")
    return value.lower()


def check_expected(path: Path, sha: str, expected: str | None) -> None:
    """Refuse a weights file whose sha256 is not the one a caller recorded."""
    if expected is not None and sha != expected:
        raise UnsafeCheckpointError(
            f"{path} is not the classifier expected: its sha256 is {sha}, the run that used it recorded "
            f"{expected}. The classifier was replaced or retrained since; pass the one the run used."
        )


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """A safetensors state dict and the sha256 of the very bytes it was read from."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    data = path.read_bytes()
    try:
        state = load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnsafeCheckpointError(f"{path} is not a readable safetensors file ({exc}).") from None
    return state, hashlib.sha256(data).hexdigest()


def check_finite(state: Mapping[str, torch.Tensor], source: Path) -> None:
    """Refuse weights holding NaN or infinity, naming the first such tensor.

    A file overwritten in place or a training run that diverged yields such weights; they load
    without complaint and make every prediction the same class, so they are refused here.
    """
    for key, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise UnsafeCheckpointError(
                    f"{source}: tensor {key!r} holds {bad} NaN or infinite value(s) of {tensor.numel()}; the weights "
                    "are corrupt (a damaged file or a training run that diverged). Restore the file or retrain."
                )


# --------------------------------------------------------------------------- paths in cards


def resolve_recorded_path(run_dir: str | Path, recorded: Any) -> Path:
    """The file or folder a card in ``run_dir`` names: relative paths are relative to ``run_dir``.

    A card must mean the same thing whatever the current directory is, so a relative path in it
    is taken relative to the run folder that holds the card, never to the working directory.
    Write such paths with :func:`path_for_card`.

    Parameters
    ----------
    run_dir : path
        The run folder holding the card.
    recorded : str
        The path as the card records it.

    Returns
    -------
    Path
        Absolute (lexically normalised when ``recorded`` is relative).

    Raises
    ------
    RunFormatError
        If ``recorded`` is not a non-empty string.

    Examples
    --------
    >>> str(resolve_recorded_path("/runs/inv", "../clf"))
    '/runs/clf'
    >>> str(resolve_recorded_path("/runs/inv", "/data/clf"))
    '/data/clf'
    """
    if not isinstance(recorded, (str, os.PathLike)) or not str(recorded):
        raise RunFormatError(f"The card in {run_dir} records {recorded!r} as a path; expected a non-empty string.")
    path = Path(recorded)
    if path.is_absolute():
        return path
    return Path(os.path.normpath(Path(run_dir).absolute() / path))


def path_for_card(run_dir: str | Path, target: str | Path) -> str:
    """How a card in ``run_dir`` should record ``target``: relative to ``run_dir`` (POSIX separators).

    Pass the final run folder (``out``), not the staging folder: they are siblings, so the
    relative path is the same, but ``out`` says what is meant. :func:`resolve_recorded_path`
    reads it back.

    Examples
    --------
    >>> path_for_card("/runs/inv", "/runs/clf")
    '../clf'
    """
    base, target = Path(run_dir).absolute(), Path(target).absolute()
    try:
        return Path(os.path.relpath(target, base)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return str(target)
