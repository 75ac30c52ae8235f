"""Random transformations of generated images before the classifier scores them.

A fooling texture earns its label from exact pixel positions; a real garment is still a garment
when moved by two pixels or mirrored. Scoring a randomly shifted (and, for left-right symmetric
data, flipped) copy of each generated batch makes the loss terms that read the classifier (CE,
KL, cosine, orthogonality, the batch-norm prior) reward only what survives the transformation.
On Fashion-MNIST this, with the batch-norm prior, lifted robust-verifier accuracy from 0.10 to
0.76-0.85 and cut the Frechet distance from 457 to about 108 (DeepInversion, arXiv 1912.08795,
uses the same jitter and flips). Pixel priors (TV, image statistics) still see the untransformed
images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._registry import Registry

__all__ = ["Augmentation", "AUGMENTATIONS", "register_augmentation", "make_augmentation", "list_augmentations"]


class Augmentation:
    """A named random transformation ``(x, generator) -> x`` of an image batch ``(N, C, H, W)``.

    Parameters
    ----------
    name : str
    fn : callable ``(Tensor, torch.Generator or None) -> Tensor``
    params : dict
        The factory's arguments (stored in run cards).
    """

    def __init__(self, name: str, fn: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor], params: dict[str, Any] | None = None) -> None:
        self.name = str(name)
        self.fn = fn
        self.params = dict(params or {})

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.fn(x, generator)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Augmentation({self.name}{', ' + args if args else ''})"


AUGMENTATIONS: Registry[Callable[..., Augmentation]] = Registry("augmentation")


def register_augmentation(name: str) -> Callable[[Callable[..., Augmentation]], Callable[..., Augmentation]]:
    """Register a factory ``fn(**params) -> Augmentation`` under ``name``."""
    return AUGMENTATIONS.register(name)


def make_augmentation(name: str, **params: Any) -> Augmentation:
    """Build a registered augmentation, e.g. ``make_augmentation("shift-flip", shift=1)``."""
    return AUGMENTATIONS.get(name)(**params)


def list_augmentations() -> list[str]:
    return AUGMENTATIONS.names()


def _check_shift(shift: Any) -> int:
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(f"The 'shift' parameter must be an int in [0, inf). Got {shift!r} instead.")
    return shift


def _roll(x: torch.Tensor, shift: int, generator: torch.Generator | None) -> torch.Tensor:
    """Roll the whole batch by one random offset in ``[-shift, shift]`` per axis (DeepInversion's jitter)."""
    if not shift:
        return x
    dy, dx = torch.randint(-shift, shift + 1, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@register_augmentation("none")
def no_augmentation() -> Augmentation:
    """The identity: the classifier scores the generated images as they are."""
    return Augmentation("none", lambda x, generator: x)


@register_augmentation("shift")
def shift(shift: int = 2) -> Augmentation:
    """Circular shift of the batch by up to ``shift`` pixels along each axis.

    For data that is not left-right symmetric (digits, text); on 8x8 digits use ``shift=1``.
    """
    shift = _check_shift(shift)
    return Augmentation("shift", lambda x, generator: _roll(x, shift, generator), {"shift": shift})


@register_augmentation("shift-flip")
def shift_flip(shift: int = 2, flip: float = 0.5) -> Augmentation:
    """Shift as :func:`shift`, then mirror the batch left-right with probability ``flip``.

    For left-right symmetric classes (clothes, natural images).
    """
    shift = _check_shift(shift)
    if isinstance(flip, bool) or not isinstance(flip, (int, float)) or not 0 <= flip <= 1:
        raise ValueError(f"The 'flip' parameter of shift-flip must be a float in [0, 1]. Got {flip!r} instead.")
    flip = float(flip)

    def fn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = _roll(x, shift, generator)
        if flip and float(torch.rand((), generator=generator)) < flip:
            x = x.flip(3)
        return x

    return Augmentation("shift-flip", fn, {"shift": shift, "flip": flip})


@register_augmentation("affine")
def affine(scale: float = 0.1, degrees: float = 10.0, shift: int = 2, flip: float = 0.5) -> Augmentation:
    """A random similarity transform per image: zoom by up to ``1 +- scale``, rotate by up to
    ``+-degrees``, translate by up to ``shift`` pixels, mirror with probability ``flip``.

    Stronger than :func:`shift_flip` in two ways: every image of the batch gets its own
    transform, and a label earned by exact pixel positions or a fixed size does not survive a
    zoom or a small rotation, whereas a garment's silhouette does (feature visualisation of
    non-robust classifiers relies on the same transformation robustness, Olah et al. 2017).
    Zero padding: for data on a dark background (MNIST, Fashion-MNIST).
    """
    shift = _check_shift(shift)
    for name, value, high in (("scale", scale, 0.5), ("degrees", degrees, 180.0), ("flip", flip, 1.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
            raise ValueError(f"The '{name}' parameter of affine must be a float in [0, {high}]. Got {value!r} instead.")
    scale, degrees, flip = float(scale), float(degrees), float(flip)

    def fn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = x.shape
        u = torch.rand(n, 5, generator=generator).to(x.device) * 2 - 1  # zoom, angle, dx, dy in [-1, 1]; flip coin
        zoom = 1.0 + scale * u[:, 0]
        angle = torch.deg2rad(degrees * u[:, 1])
        mirror = torch.where((u[:, 4] + 1) / 2 < flip, -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos * mirror, -sin, 2 * shift * u[:, 2] / w], 1),
                             torch.stack([sin * mirror, cos, 2 * shift * u[:, 3] / h], 1)], 1)
        grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return Augmentation("affine", fn, {"scale": scale, "degrees": degrees, "shift": shift, "flip": flip})
