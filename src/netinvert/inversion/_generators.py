"""Generators G(z, c) sized from the classifier's input shape.

``conv`` upsamples a small feature map twice (nearest neighbour + 3x3 convolution, batch norm,
ReLU, heavy dropout) to the classifier's resolution; ``mlp`` is a fully connected generator for
tiny inputs. Both end in a sigmoid, so samples lie in the classifier's [0, 1] input range by
construction.

Dropout in the up-convolution layers stays active when sampling (the papers' remedy for mode
collapse: each draw sees a different thinned generator); batch norm uses its running statistics
when sampling, so a sample does not depend on the other samples in its batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import Registry

__all__ = [
    "Generator",
    "ConvGenerator",
    "MLPGenerator",
    "GENERATORS",
    "register_generator",
    "make_generator",
    "list_generators",
    "auto_generator_name",
]


class Generator(nn.Module):
    """Base class: ``forward(z, code, matrix) -> (N, C, H, W)`` images in [0, 1].

    Parameters
    ----------
    input_shape : (C, H, W)
        The classifier's input shape; samples have this shape.
    latent_dim : int
        Size of ``z``.
    code_dim : int
        Size of the conditioning vector (0 when the conditioning has none).
    matrix_size : int
        Side of the hot conditioning matrix (0 when the conditioning has none).
    dropout : float
        Dropout rate of the hidden layers, active when sampling too.
    width : int
        Capacity: channels (conv) or hidden units / 4 (mlp).
    """

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int, code_dim: int = 0, matrix_size: int = 0,
                 dropout: float = 0.5, width: int = 64) -> None:
        super().__init__()
        if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
            raise ValueError(f"The 'input_shape' parameter of {type(self).__name__} must be (C, H, W) of positive ints. Got {tuple(input_shape)} instead.")
        for name, value, low in (("latent_dim", latent_dim, 1), ("code_dim", code_dim, 0), ("matrix_size", matrix_size, 0), ("width", width, 1)):
            if int(value) < low:
                raise ValueError(f"The '{name}' parameter of {type(self).__name__} must be an int in [{low}, inf). Got {value} instead.")
        if not (0.0 <= float(dropout) < 1.0):
            raise ValueError(f"The 'dropout' parameter of {type(self).__name__} must be a float in [0, 1). Got {dropout} instead.")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim)
        self.code_dim = int(code_dim)
        self.matrix_size = int(matrix_size)
        self.dropout = float(dropout)
        self.width = int(width)

    def get_params(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "latent_dim": self.latent_dim, "code_dim": self.code_dim,
                "matrix_size": self.matrix_size, "dropout": self.dropout, "width": self.width}

    def sampling_mode(self) -> Generator:
        """Eval mode except dropout, which stays active (see the module docstring)."""
        self.eval()
        for m in self.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.train()
        return self

    def _inputs(self, z: torch.Tensor, code: torch.Tensor | None) -> torch.Tensor:
        if self.code_dim:
            if code is None:
                raise ValueError(f"{type(self).__name__} was built with code_dim={self.code_dim} but got no code.")
            return torch.cat([z, self.embed(code)], 1)
        return z


def _check_matrix(gen: Generator, matrix: torch.Tensor | None) -> None:
    if gen.matrix_size and matrix is None:
        raise ValueError(f"{type(gen).__name__} was built with matrix_size={gen.matrix_size} but got no matrix.")


class ConvGenerator(Generator):
    """Linear -> (2w, h/4, w/4) map, two (nearest upsample, 3x3 conv, BN, ReLU, dropout) blocks, 3x3 conv, sigmoid.

    Nearest-neighbour upsampling followed by a convolution replaces transposed convolutions,
    which produced stripe artefacts (METHODS.md section 5). The hot matrix (if any) is resized
    with nearest neighbour to the stage whose resolution is closest to its side and
    concatenated there as one extra channel. Sizes that are not multiples of 4 are reached by
    cropping the centre of the last map.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        c, h, w = self.input_shape
        self.base = (math.ceil(h / 4), math.ceil(w / 4))
        widths = (2 * self.width, self.width, self.width)
        if self.code_dim:
            self.embed = nn.Linear(self.code_dim, self.latent_dim)
        in_dim = self.latent_dim * (2 if self.code_dim else 1)
        self.fc = nn.Sequential(nn.Linear(in_dim, widths[0] * self.base[0] * self.base[1]), nn.BatchNorm1d(widths[0] * self.base[0] * self.base[1]), nn.ReLU())
        sides = [min(self.base) * 2**s for s in range(3)]
        self.matrix_stage = min(range(3), key=lambda s: abs(sides[s] - self.matrix_size)) if self.matrix_size else -1
        extra = [int(s == self.matrix_stage) for s in range(3)]
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(widths[s] + extra[s], widths[s + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(widths[s + 1]),
                nn.ReLU(),
                nn.Dropout(self.dropout),
            )
            for s in range(2)
        )
        self.out = nn.Conv2d(widths[2] + extra[2], c, 3, padding=1)

    def _with_matrix(self, x: torch.Tensor, matrix: torch.Tensor | None, stage: int) -> torch.Tensor:
        if stage != self.matrix_stage:
            return x
        m = F.interpolate(matrix, size=x.shape[-2:], mode="nearest")
        return torch.cat([x, m], 1)

    def forward(self, z: torch.Tensor, code: torch.Tensor | None = None, matrix: torch.Tensor | None = None) -> torch.Tensor:
        _check_matrix(self, matrix)
        x = self.fc(self._inputs(z, code)).view(len(z), -1, *self.base)
        for s, block in enumerate(self.up):
            x = block(self._with_matrix(x, matrix, s))
        x = self.out(self._with_matrix(x, matrix, 2))
        _, h, w = self.input_shape
        top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        return torch.sigmoid(x[:, :, top : top + h, left : left + w])


def mlp_body(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Two hidden layers (linear, batch norm, ReLU, dropout) and a linear output: the body of the MLP generators."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )


class MLPGenerator(Generator):
    """Two hidden layers of ``4 * width`` units (BN, ReLU, dropout), then a sigmoid image.

    The flattened hot matrix (if any) joins the input: at tiny resolutions there is no
    intermediate feature map for it to become a channel of.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        c, h, w = self.input_shape
        hidden = 4 * self.width
        if self.code_dim:
            self.embed = nn.Linear(self.code_dim, self.latent_dim)
        in_dim = self.latent_dim * (2 if self.code_dim else 1) + self.matrix_size**2
        self.body = mlp_body(in_dim, hidden, c * h * w, self.dropout)

    def forward(self, z: torch.Tensor, code: torch.Tensor | None = None, matrix: torch.Tensor | None = None) -> torch.Tensor:
        _check_matrix(self, matrix)
        x = self._inputs(z, code)
        if self.matrix_size:
            x = torch.cat([x, matrix.flatten(1)], 1)
        return torch.sigmoid(self.body(x)).view(len(z), *self.input_shape)


GeneratorFactory = Callable[..., Generator]
GENERATORS: Registry[GeneratorFactory] = Registry("generator")
GENERATORS.add("conv", ConvGenerator)
GENERATORS.add("mlp", MLPGenerator)


def register_generator(name: str) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Register a :class:`Generator` subclass (or factory taking its keyword parameters) under ``name``."""
    return GENERATORS.register(name)


def auto_generator_name(input_shape: Sequence[int]) -> str:
    """``conv`` for images of at least 8x8, ``mlp`` below (too small to upsample twice)."""
    return "conv" if min(int(s) for s in input_shape[1:]) >= 8 else "mlp"


def make_generator(name: str, **params: Any) -> Generator:
    """Build a registered generator; ``name="auto"`` picks one from ``params["input_shape"]``."""
    if name == "auto":
        name = auto_generator_name(params["input_shape"])
    return GENERATORS.get(name)(**params)


def list_generators() -> list[str]:
    return GENERATORS.names()
