"""Named :class:`Inverter` settings per kind of data, and the learning-rate schedules of a fit.

A preset is the recipe one benchmark chose; the figures behind each are in ``bench/results/inversion.md``
(``bench/inversion.py``) and ``docs/history/inversion_sweep.md`` (``bench/inversion_sweep.py``), not here.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._registry import Registry

__all__ = ["Preset", "PRESETS", "preset", "list_presets", "register_preset",
           "LR_SCHEDULES", "list_lr_schedules", "register_lr_schedule"]


@dataclass(frozen=True)
class Preset:
    """Recommended :class:`Inverter` settings: ``Inverter(clf, **preset.settings)``; explicit arguments win.

    Parameters
    ----------
    name : str
    settings : mapping
        Keyword arguments of :class:`Inverter` (read-only; :meth:`as_dict` gives a copy).
    description : str
        One sentence: what the recipe is for and why.
    """

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", types.MappingProxyType(dict(self.settings)))

    def as_dict(self) -> dict[str, Any]:
        """A mutable copy of the settings."""
        return dict(self.settings)


_PRESETS: Registry[Preset] = Registry("inverter preset")


def register_preset(name: str, *, description: str = "", **settings: Any) -> Preset:
    """Register (and return) a :class:`Preset`; registering a name twice is an error."""
    entry = Preset(name, settings, description)
    _PRESETS.add(name, entry)
    return entry


def list_presets() -> list[str]:
    """Names of the registered presets."""
    return _PRESETS.names()


def preset(name: str) -> dict[str, Any]:
    """A copy of the settings of preset ``name``, ready for ``Inverter(clf, **preset(name))``."""
    if name not in _PRESETS:
        raise ValueError(f"Unknown inverter preset {name!r}; choose one of {list_presets()}.")
    return _PRESETS.get(name).as_dict()


class _PresetSettings(Mapping[str, Mapping[str, Any]]):
    """``PRESETS[name]``: the read-only settings of each registered preset (a live view of the registry)."""

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        if name not in _PRESETS:
            raise KeyError(name)
        return _PRESETS.get(name).settings

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(_PRESETS.names())

    def __len__(self) -> int:
        return len(_PRESETS.names())


#: Read-only view ``name -> settings`` of the registered presets.
PRESETS: Mapping[str, Mapping[str, Any]] = _PresetSettings()

register_preset("default", description="The package defaults, tuned on 8x8 digits (bench/inversion.py tier a).")

# The Fashion-MNIST study's recipe (bench/inversion.py tiers b and d, bench/inversion_sweep.py): the classifier scores
# shifted and mirrored copies, priors (batch norm, TV, image statistics) keep samples natural, mode seeking and an EMA
# copy slow the collapse, and the margin-limited pixel-space cosine term stops the collapse to one template per class.
_FASHION: dict[str, Any] = {
    "losses": ("ce:1", "bn:1", "tv:0.3", "image_stats:1", "mode_seeking:0.05",
               "cosine:3:centred=true,space=pixels,margin=0.4"),
    "augment": "shift-flip",
    "dropout": 0.5,
    "width": 32,
    "lr": 1e-3,
    "batch_size": 64,
    "ema": 0.99,
    "lr_schedule": "cosine",
}
register_preset("fashion", description="28x28 grey clothes, a CNN with batch norm (bench/results/inversion.md tier b).",
                **_FASHION)
# at weight 3 the pixel term cost an adversarially trained target its validity; weight 1, margin 0.3 kept it (tier c)
register_preset("fashion-robust", description="Adversarially trained Fashion-MNIST targets (tier c).",
                **{**_FASHION, "losses": (*_FASHION["losses"][:-1], "cosine:1:centred=true,space=pixels,margin=0.3")})
# with image_prior=...: the decoder replaces the batch-norm and image-statistics priors, CE 3 keeps validity and a
# stronger pixel-space term fights the decoder's pull to its average garment (tier f)
register_preset("fashion-prior", description="Fashion-MNIST through a learned image prior (needs image_prior; tier f).",
                **{**_FASHION, "losses": ("ce:3", "tv:0.3", "mode_seeking:0.05", "cosine:6:centred=true,space=pixels,margin=0.3"),
                   "augment": "shift", "lr": 2e-3, "generator": "prior"})

# Training-like data reconstruction (TLDR, arXiv 2410.16884): the one-hot ("hot") conditioning and its nine terms.
# The perturbed KL/CE terms keep only samples whose label survives noise; grad_norm pulls samples to where the
# trained model's loss gradient vanishes (its training images, for a model trained to near-zero loss). The weights
# are the starting point of bench/reconstruct.py's ablation, not a tuned optimum.
register_preset("tldr", description="Training-like data reconstruction: one-hot conditioning and the nine TLDR terms.",
                conditioning="label",
                losses=("kl:1", "ce:1", "kl_perturbed:1", "ce_perturbed:1", "cosine:1", "ortho:1", "tv:0.05", "range:1",
                        "grad_norm:1"))

#: Learning-rate schedules: ``name -> (fraction of the budget spent in [0, 1]) -> factor on the base rate``.
LR_SCHEDULES: Registry[Callable[[float], float]] = Registry("learning-rate schedule")


def register_lr_schedule(name: str) -> Callable[[Callable[[float], float]], Callable[[float], float]]:
    """Decorator registering ``schedule(frac) -> factor`` under ``name``."""
    return LR_SCHEDULES.register(name)


def list_lr_schedules() -> list[str]:
    """Names of the registered learning-rate schedules."""
    return LR_SCHEDULES.names()


@register_lr_schedule("constant")
def _constant(frac: float) -> float:
    return 1.0


@register_lr_schedule("cosine")
def _cosine(frac: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
