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
    "MaskDropout",
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


class MaskDropout(nn.Dropout):
    """``nn.Dropout`` (zero each element with probability ``p``, scale the rest by ``1 / (1 - p)``), faster on CPUs.

    The same distribution as ``nn.Dropout``, drawn from the same global torch random state, but the mask is
    ``rand(shape) >= p`` rather than ``bernoulli_``: on a CPU torch's ``bernoulli_`` draws element by element
    on one thread and took 10-20% of a Fashion-MNIST inversion step (issue 15), ``rand`` is vectorised and
    about 6x faster. Subclassing ``nn.Dropout`` keeps :meth:`Generator.sampling_mode` (which keeps dropout
    active when sampling) and state dicts unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, device=x.device, dtype=x.dtype) >= self.p
        return x * (keep * (1.0 / (1.0 - self.p)))


#: For output row parity ``a`` (0 even, 1 odd), which low-resolution row (-1, 0, +1 around ``i``) each tap
#: (dy = -1, 0, +1) of a 3x3 kernel reads after nearest 2x upsampling: ``_PHASE_TAPS[a][new, old]``.
_PHASE_TAPS = torch.tensor([[[1.0, 0, 0], [0, 1, 1], [0, 0, 0]], [[0.0, 0, 0], [1, 1, 0], [0, 0, 1]]])
#: ``(9, 36)``: a 3x3 kernel's taps to the four output phases' 3x3 kernels at low resolution (``_PHASE_TAPS`` twice).
_PHASE_MAP = torch.einsum("pij,qlk->pqiljk", _PHASE_TAPS, _PHASE_TAPS).reshape(36, 9).T.contiguous()
#: Input maps with fewer pixels than this take the plain path: there the kernel transform costs more than it saves.
_FUSE_MIN_AREA = 36


def upsample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv2d(upsample_nearest_2x(x), weight, bias, padding=1)`` for a 3x3 ``weight``, without the upsampled map.

    After nearest-neighbour upsampling, each of the four output phases (even/odd row, even/odd column) is
    a 3x3 convolution of the low-resolution map whose taps are sums of the original taps; the four are one
    convolution with four times the output channels, interleaved by ``pixel_shuffle``. The same function
    of ``x`` and ``weight`` (float rounding aside), at a quarter of the input pixels: the upsampled
    ``(N, C, 2H, 2W)`` map and its gradient are never formed, which halved the up-blocks' forward and
    backward time at Fashion-MNIST sizes.
    """
    co, ci = weight.shape[:2]
    k = (weight.reshape(co * ci, 9) @ _PHASE_MAP.to(weight.dtype)).reshape(co, ci, 2, 2, 3, 3)
    k = k.permute(0, 2, 3, 1, 4, 5).reshape(4 * co, ci, 3, 3)
    y = F.conv2d(x, k, None if bias is None else bias.repeat_interleave(4), padding=1)
    return F.pixel_shuffle(y, 2)


class _UpBlock(nn.Sequential):
    """(nearest 2x upsample, 3x3 conv, ...) whose first two run as :func:`upsample_conv` on large enough maps.

    A ``Sequential`` with the same children as before, so state dicts and module names are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, conv, *rest = self
        if x.shape[-2] * x.shape[-1] >= _FUSE_MIN_AREA:
            x = upsample_conv(x, conv.weight, conv.bias)
        else:
            x = conv(up(x))
        for module in rest:
            x = module(x)
        return x


def _check_matrix(gen: Generator, matrix: torch.Tensor | None) -> None:
    if gen.matrix_size and matrix is None:
        raise ValueError(f"{type(gen).__name__} was built with matrix_size={gen.matrix_size} but got no matrix.")


class ConvGenerator(Generator):
    """Linear -> (2w, h/4, w/4) map, two (nearest upsample, 3x3 conv, BN, ReLU, dropout) blocks, 3x3 conv, sigmoid.

    ``top_width`` (default ``width``) sets the channels of the last block, the one at full resolution: its
    cost grows with the image's area, so at 28x28 it holds about two thirds of the generator's
    arithmetic, while the low-resolution blocks decide the layout (a generator sized to the image).

    Nearest-neighbour upsampling followed by a convolution replaces transposed convolutions,
    which produced stripe artefacts (METHODS.md section 5). The hot matrix (if any) is resized
    with nearest neighbour to the stage whose resolution is closest to its side and
    concatenated there as one extra channel. Sizes that are not multiples of 4 are reached by
    cropping the centre of the last map.
    """

    def __init__(self, *, top_width: int | None = None, **params: Any) -> None:
        super().__init__(**params)
        if top_width is not None and (isinstance(top_width, bool) or not isinstance(top_width, int) or top_width < 1):
            raise ValueError(f"The 'top_width' parameter of ConvGenerator must be an int in [1, inf) or None. Got {top_width!r} instead.")
        self.top_width = top_width
        c, h, w = self.input_shape
        self.base = (math.ceil(h / 4), math.ceil(w / 4))
        widths = (2 * self.width, self.width, self.width if top_width is None else top_width)
        if self.code_dim:
            self.embed = nn.Linear(self.code_dim, self.latent_dim)
        in_dim = self.latent_dim * (2 if self.code_dim else 1)
        self.fc = nn.Sequential(nn.Linear(in_dim, widths[0] * self.base[0] * self.base[1]), nn.BatchNorm1d(widths[0] * self.base[0] * self.base[1]), nn.ReLU())
        sides = [min(self.base) * 2**s for s in range(3)]
        self.matrix_stage = min(range(3), key=lambda s: abs(sides[s] - self.matrix_size)) if self.matrix_size else -1
        extra = [int(s == self.matrix_stage) for s in range(3)]
        self.up = nn.ModuleList(
            _UpBlock(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(widths[s] + extra[s], widths[s + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(widths[s + 1]),
                nn.ReLU(),
                MaskDropout(self.dropout),
            )
            for s in range(2)
        )
        self.out = nn.Conv2d(widths[2] + extra[2], c, 3, padding=1)

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        if self.top_width is not None:  # absent by default, so cards and checkpoints written before it still match
            params["top_width"] = self.top_width
        return params

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
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), MaskDropout(dropout),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), MaskDropout(dropout),
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
