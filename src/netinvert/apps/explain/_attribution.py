"""Attribution maps from Captum, averaged per class: the standard explanation ours is compared with.

Each registered method maps ``(model, x, target) -> attributions`` of ``x``'s shape; a class's map
is the mean absolute attribution over test images of that class, for the class itself (where the
model looks when it says "this is a c"). Captum (https://captum.ai) is the library users already
run; it imports with the CPU torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..._registry import Registry

__all__ = ["ATTRIBUTIONS", "Attribution", "class_attribution_maps", "list_attributions", "register_attribution"]

#: ``fn(model, x, target) -> attributions`` (same shape as ``x``).
AttributionFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Attribution:
    """A registry entry: the name, one line on what it computes, and the function."""

    name: str
    description: str
    attribute: AttributionFn


ATTRIBUTIONS: Registry[Attribution] = Registry("attribution")


def register_attribution(name: str, *, description: str) -> Callable[[AttributionFn], AttributionFn]:
    """Register ``attribute(model, x, target) -> attributions`` under ``name``."""

    def decorator(fn: AttributionFn) -> AttributionFn:
        ATTRIBUTIONS.add(name, Attribution(name, description, fn))
        return fn

    return decorator


def list_attributions() -> list[str]:
    """Registered attribution names, sorted."""
    return ATTRIBUTIONS.names()


@register_attribution("integrated-gradients",
                      description="Captum's IntegratedGradients from a black image, 32 steps (Sundararajan et al. 2017)")
def _integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=32)


@register_attribution("saliency", description="Captum's Saliency: |d logit_c / d x| (Simonyan et al. 2014)")
def _saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from captum.attr import Saliency

    return Saliency(model).attribute(x, target=target, abs=True)


def class_attribution_maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int, method: str = "integrated-gradients",
                           *, batch_size: int = 64) -> torch.Tensor:
    """Mean absolute attribution per class ``(n_classes, C, H, W)`` over the images ``x`` of each true label ``y``.

    A class with no image gets a map of zeros. The model is put in eval mode (and left so).

    Raises
    ------
    UnknownNameError
        If ``method`` is not registered (the message lists the valid names).
    ValueError
        If ``x`` and ``y`` differ in length or ``x`` is empty.
    """
    attribution = ATTRIBUTIONS.get(method)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"class_attribution_maps needs as many labels as images (at least one). Got {len(x)} images "
                         f"and {len(y)} labels instead.")
    model.eval()
    device = next(model.parameters()).device
    sums = torch.zeros(n_classes, *x.shape[1:], dtype=torch.float64)
    counts = torch.bincount(y, minlength=n_classes).clamp_min(1).double()
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        attr = attribution.attribute(model, xb, yb).detach().abs().double().cpu()
        sums.index_add_(0, yb.cpu(), attr)
    return (sums / counts.view(-1, *([1] * (x.dim() - 1)))).float()
