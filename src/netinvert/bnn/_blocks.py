"""Block layouts of a BNN's first layer: each hidden neuron reads one region of the image only.

A first layer whose neurons fall into blocks that share no input makes the net countable where a dense
one is not: :func:`~netinvert.bnn.count_labels_factored` builds each block's histogram of class-score
contributions alone and adds them (two blocks of 16 neurons over the 32 pixels of each half of an 8x8
digit are counted exactly in minutes; the dense 64-32 net is not counted at all). A layout names the
regions; :func:`block_mask` gives the fixed 0/1 mask that keeps every neuron inside its region.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._registry import Registry

__all__ = ["BLOCK_LAYOUTS", "block_mask", "list_block_layouts"]

#: layout name -> ``side -> (region of every pixel of a side x side image, row-major; number of regions)``
BLOCK_LAYOUTS: Registry[Callable[[int], tuple[torch.Tensor, int]]] = Registry("block layout")


@BLOCK_LAYOUTS.register("halves")
def _halves(side: int) -> tuple[torch.Tensor, int]:
    """Top and bottom half (rows ``[0, side/2)`` and ``[side/2, side)``)."""
    return torch.tensor([r // (side // 2) for r in range(side) for _ in range(side)]), 2


@BLOCK_LAYOUTS.register("quadrants")
def _quadrants(side: int) -> tuple[torch.Tensor, int]:
    """The four quadrants, row-major: top left, top right, bottom left, bottom right."""
    h = side // 2
    return torch.tensor([(r // h) * 2 + c // h for r in range(side) for c in range(side)]), 4


def list_block_layouts() -> list[str]:
    """Names accepted by ``BNN(blocks=...)`` and ``netinvert bnn train --blocks``."""
    return BLOCK_LAYOUTS.names()


def block_mask(layout: str, n_inputs: int, width: int) -> torch.Tensor:
    """The first-layer mask ``(width, n_inputs)`` of ``layout``: neurons ``[b * width / B, (b + 1) * width / B)``
    read only the pixels of region ``b`` of the ``B`` regions.

    Raises
    ------
    UnknownNameError
        ``layout`` is not registered (the message lists the valid ones).
    ValueError
        The inputs are not a square image with an even side, or ``width`` is not a multiple of the number
        of regions.
    """
    regions_of = BLOCK_LAYOUTS.get(layout)
    side = math.isqrt(n_inputs)
    if side * side != n_inputs or side % 2:
        raise ValueError(f"Block layout {layout!r} needs the inputs of a square image with an even side. Got {n_inputs} "
                         "inputs instead; choose --pool so that the binarised image is square with an even side.")
    region, n_regions = regions_of(side)
    if width % n_regions:
        raise ValueError(f"Block layout {layout!r} splits the first hidden layer into {n_regions} equal blocks: its width "
                         f"must be a multiple of {n_regions}. Got {width} instead.")
    per_block = width // n_regions
    return (torch.arange(width)[:, None] // per_block == region[None, :]).float()
