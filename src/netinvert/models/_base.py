"""The classifier contract every inversion method relies on, and the model registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

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
        if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
            raise ValueError(f"input_shape must be (C, H, W) of positive ints. Got {tuple(input_shape)} instead.")
        if int(n_classes) < 2:
            raise ValueError(f"n_classes must be an int in [2, inf). Got {n_classes} instead.")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_classes = int(n_classes)
        c = self.input_shape[0]
        mean = list(mean) if mean is not None else [0.0] * c
        std = list(std) if std is not None else [1.0] * c
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean and std need {c} values (one per channel). Got {len(mean)} and {len(std)}.")
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
    """Build a registered classifier, e.g. ``build_model("cnn", input_shape=(1, 8, 8), n_classes=10)``."""
    return MODELS.get(name)(**params)


def list_models() -> list[str]:
    return MODELS.names()
