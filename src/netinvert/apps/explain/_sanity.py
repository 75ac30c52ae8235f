"""Sanity checks for explanation maps (Adebayo et al. 2018, arXiv 1810.03292).

A map that stays the same when the model's weights are replaced by random ones explains the data,
not the model. The *cascading model randomisation test* re-initialises the model's layers one by
one from the output back to the input and compares the maps of each step with the trained model's;
the *label randomisation test* compares them with the maps of the same architecture trained on
shuffled labels. Similarity is SSIM between maps scaled to [0, 1] (:func:`map_ssim`): near 1 means
the map did not notice, and the check fails.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from ...metrics import paired_ssim

__all__ = ["cascading_randomisation", "map_ssim", "parameter_layers", "scale_maps"]


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of the layers with a weight matrix or kernel (convolutions, linear layers), input to output.

    Normalisation layers are left out of the cascade: their ``reset_parameters`` also clears the
    running statistics, which breaks the network's scale rather than its learnt features.
    """
    return [name for name, m in model.named_modules()
            if name and hasattr(m, "reset_parameters") and isinstance(getattr(m, "weight", None), torch.Tensor)
            and m.weight.dim() >= 2]


def cascading_randomisation(model: nn.Module, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(layer, model)`` with the weights of ``layer`` and of every layer after it re-initialised.

    The first item randomises the output layer only, the last every layer (Adebayo et al.'s
    cascade). Each model is a fresh copy in eval mode; ``model`` itself is never changed. The
    re-initialisation is each layer's own ``reset_parameters`` under ``torch.manual_seed(seed)``
    (the random state is restored afterwards).
    """
    layers = parameter_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no layer with weights to randomise.")
    current = copy.deepcopy(model)
    modules = dict(current.named_modules())
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        for name in reversed(layers):
            modules[name].reset_parameters()
            yield name, copy.deepcopy(current).eval()


def scale_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map of ``(K, C, H, W)`` scaled to [0, 1] by its own minimum and maximum (a constant map becomes 0)."""
    flat = maps.reshape(len(maps), -1).float()
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(maps.shape)


def map_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM ``(K,)`` between corresponding maps of two ``(K, C, H, W)`` sets, each map scaled to [0, 1] first.

    Scaling makes the check about where a map is high, not about its units (attributions of a
    random model are smaller overall, which alone would lower the SSIM and flatter the map).
    """
    return paired_ssim(scale_maps(a), scale_maps(b))
