"""The classifier contract every inversion method relies on, and the model registry."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .._checks import bad_param
from .._registry import Registry

__all__ = ["Classifier", "MODELS", "register_model", "build_model", "list_models"]


class Classifier(nn.Module):
    """Base of netinvert's classifiers: normalises [0, 1] inputs itself and exposes features.

    Inputs are ``(N, C, H, W)`` images in [0, 1]; normalisation with the training statistics
    happens inside, so generators and SAT encoders can work in plain pixel space. Subclasses
    implement :meth:`features` (the penultimate representation, ``(N, D)``, which the diversity
    losses use) and set ``self.head``, the final ``nn.Linear``.

    Parameters
    ----------
    input_shape : (C, H, W)
    n_classes : int
    mean, std : per-channel statistics of the training images.
    """

    head: nn.Linear

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        n_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        owner = model_label(type(self))
        self.input_shape = check_int_list(input_shape, "input_shape", owner, length=3, what="(C, H, W)")
        self.n_classes = check_int(n_classes, "n_classes", owner, low=2)
        c = self.input_shape[0]
        mean = [0.0] * c if mean is None else check_float_list(mean, "mean", owner, length=c)
        std = [1.0] * c if std is None else check_float_list(std, "std", owner, length=c, positive=True)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error when ``x`` is not a batch of this classifier's images."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{type(self).__name__} expects a torch.Tensor. Got {type(x).__name__} instead.")
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (N, {', '.join(map(str, self.input_shape))}). "
                f"Got {tuple(x.shape)} instead."
            )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, D)`` of [0, 1] images ``x``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes)`` of [0, 1] images ``x``."""
        return self.head(self.features(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate features in one pass (what inversion losses need)."""
        f = self.features(x)
        return self.head(f), f

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild the module from a card."""
        return {
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            **self._extra_params(),
        }

    def _extra_params(self) -> dict[str, Any]:
        return {}


ModelFactory = Callable[..., Classifier]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    return MODELS.register(name)


def build_model(name: str, **params: Any) -> Classifier:
    """Build a registered classifier, e.g. ``build_model("cnn", input_shape=(1, 8, 8), n_classes=10)``.

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered (the message lists the valid names).
    ValueError
        If a parameter is out of range, in scikit-learn's words: "The 'channels' parameter of cnn
        must be a list of ints in [1, inf). Got [0, 8] instead."
    TypeError
        If a parameter name is unknown to the model.
    """
    return MODELS.get(name)(**params)


def list_models() -> list[str]:
    return MODELS.names()


# --------------------------------------------------------------------------- parameter checks
# Architecture parameters arrive from cards and the command line as JSON values, so they are
# checked here, by type and range, before any layer is built: a zero width would otherwise
# surface as a RuntimeError deep inside torch.


def model_label(cls: type) -> str:
    """The registry name of a model class (what users type), else its class name."""
    for name in MODELS.names():
        if MODELS.get(name) is cls:
            return name
    return cls.__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, name: str, owner: str, *, low: int = 1) -> int:
    """``value`` as an int in ``[low, inf)``, or a ValueError in scikit-learn's words."""
    if not _is_int(value) or value < low:
        raise bad_param(owner, name, f"an int in [{low}, inf)", value)
    return int(value)


def check_float(value: Any, name: str, owner: str, *, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float in ``[low, high)`` (NaN refused), or a ValueError."""
    if not _is_real(value) or not low <= float(value) < high:
        raise bad_param(owner, name, f"a float in [{low:g}, {high:g})", value)
    return float(value)


def check_int_list(value: Any, name: str, owner: str, *, low: int = 1, length: int | None = None,
                   what: str = "") -> tuple[int, ...]:
    """``value`` as a tuple of ints in ``[low, inf)`` (of ``length`` items if given), or a ValueError."""
    ok = isinstance(value, Sequence) and not isinstance(value, (str, bytes)) \
        and (length is None or len(value) == length) and all(_is_int(v) and v >= low for v in value)
    if not ok:
        count = f"{length} " if length is not None else ""
        raise bad_param(owner, name, f"a list of {count}ints in [{low}, inf){f' {what}' if what else ''}", value)
    return tuple(int(v) for v in value)


def check_float_list(value: Any, name: str, owner: str, *, length: int, positive: bool = False) -> list[float]:
    """``value`` as ``length`` finite floats (positive ones if ``positive``), or a ValueError."""
    ok = isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == length \
        and all(_is_real(v) and math.isfinite(v) and (v > 0 or not positive) for v in value)
    if not ok:
        span = "(0, inf)" if positive else "(-inf, inf)"
        raise bad_param(owner, name, f"a list of {length} floats in {span} (one per channel)", value)
    return [float(v) for v in value]
