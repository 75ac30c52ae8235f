"""OOD sets available offline: noise, and any registered dataset converted to the in-distribution shape.

Every set is returned as a float32 tensor ``(n, C, H, W)`` in [0, 1] in the shape the
in-distribution classifier takes, so one detector scores in- and out-of-distribution images alike.
Dataset images are converted by :func:`convert_images`: channels first (RGB -> grey with the
ITU-R BT.601 luma weights Pillow's ``convert("L")`` uses, grey -> RGB by repetition), then the size,
with ``torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False)``:
antialiasing low-pass filters before downscaling (Fashion-MNIST 28x28 -> 8x8 keeps the shapes
instead of aliasing into speckle, as Pillow's resize does); upscaling (digits 8x8 -> 28x28) is
plain bilinear.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..._registry import Registry
from ...data import DATASETS, Dataset, list_datasets, load_dataset
from ...exceptions import DatasetError, UnknownNameError

__all__ = [
    "OODSet",
    "OOD_SETS",
    "convert_images",
    "list_ood_sets",
    "load_ood_set",
    "ood_from_dataset",
    "register_ood_set",
]

#: ITU-R BT.601 luma weights (R, G, B), as Pillow's ``Image.convert("L")``.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

Shape = tuple[int, int, int]
#: ``load(shape, n, generator, **params) -> (n, C, H, W)`` images in [0, 1].
SetLoader = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class OODSet:
    """A registry entry: a name, one line saying what the set is, and its loader."""

    name: str
    description: str
    load: SetLoader


OOD_SETS: Registry[OODSet] = Registry("OOD set")


def register_ood_set(name: str, *, description: str) -> Callable[[SetLoader], SetLoader]:
    """Register ``load(shape, n, generator, **params) -> (n, C, H, W)`` tensor under ``name``.

    ``shape`` is a checked ``(C, H, W)``, ``n`` a positive int or ``None`` (the whole set), and
    ``generator`` a seeded CPU :class:`torch.Generator` for every random choice.
    """

    def decorator(fn: SetLoader) -> SetLoader:
        OOD_SETS.add(name, OODSet(name, description, fn))
        return fn

    return decorator


def list_ood_sets() -> list[str]:
    """Names :func:`load_ood_set` accepts: the registered OOD sets and every registered dataset, sorted."""
    return sorted(set(OOD_SETS.names()) | set(list_datasets()))


# --------------------------------------------------------------------------- conversion


def _check_shape(shape: Any, owner: str) -> Shape:
    ok = isinstance(shape, (tuple, list)) and len(shape) == 3 and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in shape)
    if not ok:
        raise ValueError(f"The 'shape' parameter of {owner} must be (C, H, W), 3 ints in [1, inf). Got {shape!r} instead.")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def _grey(x: torch.Tensor) -> torch.Tensor:
    """RGB ``(N, 3, H, W)`` -> grey ``(N, 1, H, W)`` by BT.601 luma."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    """Grey ``(N, 1, H, W)`` -> RGB ``(N, 3, H, W)`` by repetition."""
    return x.expand(-1, 3, -1, -1)


#: (source channels, target channels) -> conversion; equal counts need none.
_CHANNEL_CONVERSIONS: dict[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]] = {(3, 1): _grey, (1, 3): _rgb}


def convert_images(x: torch.Tensor, shape: Shape, *, name: str = "images") -> torch.Tensor:
    """Convert images to another ``(C, H, W)``: channels, then size with antialiasing.

    Parameters
    ----------
    x : tensor of shape (N, C0, H0, W0)
        Images in [0, 1].
    shape : (C, H, W)
        Target shape. Channels convert 3 -> 1 (ITU-R BT.601 luma: 0.299 R + 0.587 G + 0.114 B) and
        1 -> 3 (repeated); the size by ``F.interpolate(mode="bilinear", antialias=True,
        align_corners=False)``. The result is clamped to [0, 1].
    name : str, default "images"
        What the images are, for error messages (e.g. ``"OOD set 'cifar10'"``).

    Returns
    -------
    tensor of shape (N, C, H, W)
        float32 in [0, 1].

    Raises
    ------
    ValueError
        If ``shape`` is not 3 positive ints, ``x`` is not ``(N, C, H, W)``, or the channels cannot be
        converted (e.g. 3 -> 2); the message names ``name``.

    Examples
    --------
    >>> convert_images(torch.ones(2, 3, 32, 32), (1, 28, 28)).shape
    torch.Size([2, 1, 28, 28])
    """
    c, h, w = _check_shape(shape, f"convert_images for {name}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"Cannot convert {name}: expected images of shape (N, C, H, W). Got {got} instead.")
    x = x.float()
    src = int(x.shape[1])
    if src != c:
        convert = _CHANNEL_CONVERSIONS.get((src, c))
        if convert is None:
            known = ", ".join(f"{a} -> {b}" for a, b in _CHANNEL_CONVERSIONS)
            raise ValueError(
                f"Cannot convert {name} to shape {(c, h, w)}: its images have {src} channels and only the same count "
                f"or {known} can be converted. Ask for a shape with {src} channels or one of those."
            )
        x = convert(x)
    if tuple(x.shape[2:]) != (h, w) and len(x):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    elif len(x) == 0:
        x = x.new_empty(0, c, h, w)
    return x.clamp(0.0, 1.0).contiguous()


# --------------------------------------------------------------------------- loading


def _check_n(n: Any, owner: str) -> int | None:
    if n is None:
        return None
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"The 'n' parameter of {owner} must be an int in [1, inf) or None. Got {n!r} instead.")
    return int(n)


def load_ood_set(name: str, shape: Shape, n: int | None = None, *, seed: int = 0, **params: Any) -> torch.Tensor:
    """Load an OOD set as images in the in-distribution shape.

    Parameters
    ----------
    name : str
        A name from :func:`list_ood_sets`: ``uniform``, ``gaussian``, ``fashion-mnist-inverted``, or
        any registered dataset (``digits``, ``fashion-mnist``, ``mnist``, ``cifar10``, ``svhn``,
        ``image-folder``), whose split is converted by :func:`convert_images`. For example
        ``load_ood_set("fashion-mnist", (1, 8, 8))`` is Fashion-MNIST downscaled for a digits model,
        ``load_ood_set("digits", (1, 28, 28))`` digits upscaled for an MNIST model, and
        ``load_ood_set("image-folder", shape, root="my_images", split="all")`` a folder of the
        user's images (laid out as the ``image-folder`` dataset wants: ``root/<any name>/*.png``).
    shape : (C, H, W)
        The in-distribution input shape.
    n : int, optional
        Number of images, drawn without replacement with ``seed`` from a dataset (default: all of the
        split). Required for the generated noise sets.
    seed : int, default 0
        Seeds the noise and the choice of images.
    **params
        Set-specific: ``mean`` and ``std`` for ``gaussian``; ``root`` (the dataset folder, as for
        :func:`~netinvert.data.load_dataset`) and ``split`` (``"test"``, ``"train"`` or ``"all"``;
        default ``"test"``) for dataset sets.

    Returns
    -------
    tensor of shape (n, C, H, W)
        float32 in [0, 1].

    Raises
    ------
    UnknownNameError
        If ``name`` is neither an OOD set nor a dataset; the message lists the valid names.
    DatasetError
        If a dataset's files are missing or malformed; the message names the OOD set and says how
        to obtain the files.
    ValueError
        If ``shape`` or ``n`` is invalid, ``n`` exceeds the images available, or the set's images
        cannot be converted to ``shape``; the message names the set.
    TypeError
        If a parameter in ``params`` is not one the set takes (e.g. ``root`` for ``uniform``).

    Examples
    --------
    >>> load_ood_set("uniform", (1, 8, 8), n=4, seed=0).shape
    torch.Size([4, 1, 8, 8])
    """
    owner = f"load_ood_set({name!r})"
    shape = _check_shape(shape, owner)
    n = _check_n(n, owner)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"The 'seed' parameter of {owner} must be an int. Got {seed!r} instead.")
    if name in OOD_SETS:
        entry = OOD_SETS.get(name)
    elif name in DATASETS:
        entry = OODSet(name, f"the {name} dataset", partial(_dataset_set, dataset=name, set_name=name, transform=None))
    else:
        raise UnknownNameError(f"Unknown OOD set {name!r}. Valid names: {', '.join(list_ood_sets())}.")
    unknown = sorted(set(params) - _set_params(entry.load))
    if unknown:
        allowed = ", ".join(sorted(_set_params(entry.load))) or "none"
        raise TypeError(f"OOD set {name!r} takes no parameter {', '.join(map(repr, unknown))}; its parameters: {allowed}.")
    return entry.load(shape, n, torch.Generator().manual_seed(int(seed)), **params)


def _set_params(load: SetLoader) -> set[str]:
    """The keyword-only parameters a set's loader leaves to the user (those a ``partial`` fixed excluded)."""
    fixed = set(load.keywords) if isinstance(load, partial) else set()
    kw_only = inspect.Parameter.KEYWORD_ONLY
    return {p.name for p in inspect.signature(load).parameters.values() if p.kind is kw_only} - fixed


def _need_n(n: int | None, name: str) -> int:
    if n is None:
        raise ValueError(f"OOD set {name!r} is generated, so it has no natural size: pass n, the number of images.")
    return n


@register_ood_set("uniform", description="Uniform noise: every pixel i.i.d. U[0, 1].")
def _uniform(shape: Shape, n: int | None, generator: torch.Generator) -> torch.Tensor:
    """Uniform noise (Hendrycks & Gimpel, arXiv 1610.02136)."""
    return torch.rand((_need_n(n, "uniform"), *shape), generator=generator)


@register_ood_set("gaussian", description="Gaussian noise: every pixel i.i.d. N(mean, std^2), clipped to [0, 1].")
def _gaussian(shape: Shape, n: int | None, generator: torch.Generator, *, mean: float = 0.5,
              std: float = 0.5) -> torch.Tensor:
    """Clipped isotropic Gaussian noise (Hendrycks & Gimpel, arXiv 1610.02136)."""
    ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in (mean, std)) \
        and std >= 0
    if not ok:
        raise ValueError(
            f"The 'mean' and 'std' parameters of OOD set 'gaussian' must be finite floats, std >= 0. "
            f"Got mean={mean!r}, std={std!r} instead."
        )
    noise = torch.randn((_need_n(n, "gaussian"), *shape), generator=generator)
    return (noise * float(std) + float(mean)).clamp(0.0, 1.0)


def _invert(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - x


#: split name -> the splits of a dataset it draws from.
_SPLITS: dict[str, Callable[[Dataset], tuple[torch.Tensor, ...]]] = {
    "test": lambda d: (d.x_test,),
    "train": lambda d: (d.x_train,),
    "all": lambda d: (d.x_train, d.x_test),
}


def ood_from_dataset(data: Dataset, shape: Shape, n: int | None = None, *, seed: int = 0, split: str = "test",
                     name: str | None = None) -> torch.Tensor:
    """Images of an already loaded dataset as an OOD set: ``n`` drawn with ``seed``, converted to ``shape``.

    Parameters
    ----------
    data : Dataset
    shape : (C, H, W)
    n : int, optional
        Default: the whole split.
    seed : int, default 0
    split : {"test", "train", "all"}, default "test"
    name : str, optional
        The set's name in messages (default ``data.name``).

    Returns
    -------
    tensor of shape (n, C, H, W)
        float32 in [0, 1], converted by :func:`convert_images`.
    """
    name = data.name if name is None else name
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"The 'seed' parameter of OOD set {name!r} must be an int. Got {seed!r} instead.")
    return _draw(data, shape, n, torch.Generator().manual_seed(int(seed)), split, name)


def _draw(data: Dataset, shape: Any, n: Any, generator: torch.Generator, split: str, name: str) -> torch.Tensor:
    """:func:`ood_from_dataset` with a generator."""
    owner = f"OOD set {name!r}"
    shape = _check_shape(shape, owner)
    n = _check_n(n, owner)
    pick = _SPLITS.get(split)
    if pick is None:
        raise ValueError(f"The 'split' parameter of {owner} must be one of {', '.join(_SPLITS)}. Got {split!r} instead.")
    parts = pick(data)
    total = sum(len(p) for p in parts)
    if n is not None and n > total:
        raise ValueError(f"{owner} asks for n={n} images but the {split} split of {data.name} holds {total}.")
    index = torch.randperm(total, generator=generator)[: total if n is None else n]
    # Gather from each split without concatenating them (a 60,000-image train split stays uncopied).
    x = torch.empty((len(index), *parts[0].shape[1:]), dtype=parts[0].dtype)
    offset = 0
    for part in parts:
        mine = (index >= offset) & (index < offset + len(part))
        x[mine] = part[index[mine] - offset]
        offset += len(part)
    return convert_images(x, shape, name=owner)


def _dataset_set(shape: Shape, n: int | None, generator: torch.Generator, *, dataset: str, set_name: str,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, root: str | Path | None = None,
                 split: str = "test") -> torch.Tensor:
    """A registered dataset's split as an OOD set (errors name ``set_name``)."""
    try:
        data = load_dataset(dataset, root)
    except DatasetError as exc:
        raise DatasetError(f"OOD set {set_name!r} cannot be loaded: {exc}") from exc
    x = _draw(data, shape, n, generator, split, set_name)
    return x if transform is None else transform(x)


OOD_SETS.add("fashion-mnist-inverted", OODSet(
    "fashion-mnist-inverted",
    "Fashion-MNIST test images with inverted intensities (1 - x): dark garments on a light background.",
    partial(_dataset_set, dataset="fashion-mnist", set_name="fashion-mnist-inverted", transform=_invert),
))
