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
from dataclasses import dataclass

import torch

from .._registry import Registry

__all__ = ["BLOCK_LAYOUTS", "BlockLayout", "block_mask", "check_block_width", "list_block_layouts"]


@dataclass(frozen=True)
class BlockLayout:
    """``n_regions`` regions of a square image; ``regions(side)`` gives the region of every pixel of a
    ``side x side`` image, row-major."""

    n_regions: int
    regions: Callable[[int], torch.Tensor]


#: layout name -> :class:`BlockLayout`
BLOCK_LAYOUTS: Registry[BlockLayout] = Registry("block layout")


def _halves(side: int) -> torch.Tensor:
    """Top and bottom half: rows ``[0, ceil(side/2))`` and the rest (an odd side gives the top the middle row)."""
    h = (side + 1) // 2
    return torch.tensor([int(r >= h) for r in range(side) for _ in range(side)])


def _quadrants(side: int) -> torch.Tensor:
    """The four quadrants, row-major: top left, top right, bottom left, bottom right (split after
    ``ceil(side/2)`` rows and columns, as :func:`_halves`)."""
    h = (side + 1) // 2
    return torch.tensor([int(r >= h) * 2 + int(c >= h) for r in range(side) for c in range(side)])


BLOCK_LAYOUTS.add("halves", BlockLayout(2, _halves))
BLOCK_LAYOUTS.add("quadrants", BlockLayout(4, _quadrants))


def list_block_layouts() -> list[str]:
    """Names accepted by ``BNN(blocks=...)`` and ``netinvert bnn train --blocks``."""
    return BLOCK_LAYOUTS.names()


def check_block_width(layout: str, width: int) -> None:
    """Raise unless the first hidden width splits into the layout's regions (before any data is read)."""
    n = BLOCK_LAYOUTS.get(layout).n_regions
    if width % n:
        raise ValueError(f"Block layout {layout!r} splits the first hidden layer into {n} equal blocks: the first hidden "
                         f"width (hidden[0], --hidden) must be a multiple of {n}. Got {width} instead.")


def block_mask(layout: str, n_inputs: int, width: int) -> torch.Tensor:
    """The first-layer mask ``(width, n_inputs)`` of ``layout``: neurons ``[b * width / B, (b + 1) * width / B)``
    read only the pixels of region ``b`` of the ``B`` regions.

    The inputs are taken as one square single-channel image, row-major (``n_inputs`` says nothing more:
    callers that know the image shape check it, as :func:`~netinvert.bnn.run_bnn_training` does).

    Raises
    ------
    UnknownNameError
        ``layout`` is not registered (the message lists the valid ones).
    ValueError
        ``n_inputs`` is not the pixel count of a square image of at least 2 x 2, or ``width`` is not a
        multiple of the number of regions.
    """
    spec = BLOCK_LAYOUTS.get(layout)
    side = math.isqrt(n_inputs)
    if side * side != n_inputs or side < 2:
        raise ValueError(f"Block layout {layout!r} needs the inputs of a square image of at least 2 x 2. Got {n_inputs} "
                         "inputs instead; choose the pooling (InputBinarizer's pool, --pool) so that the binarised image "
                         "is square and at least 2 x 2.")
    check_block_width(layout, width)
    per_block = width // spec.n_regions
    return (torch.arange(width)[:, None] // per_block == spec.regions(side)[None, :]).float()
