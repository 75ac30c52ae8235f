"""The classifier zoo: MLP, a small CNN as in the papers, and a ResNet-style CNN for RGB."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._base import Classifier, check_float, check_int, check_int_list, register_model

__all__ = ["MLP", "SmallCNN", "ResNetCNN"]


@register_model("mlp")
class MLP(Classifier):
    """Fully connected classifier; ``hidden`` lists the widths of its hidden layers."""

    def __init__(self, *, hidden: Sequence[int] = (256, 128), dropout: float = 0.2, **base: Any) -> None:
        super().__init__(**base)
        self.hidden = check_int_list(hidden, "hidden", "mlp")
        self.dropout = check_float(dropout, "dropout", "mlp")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(self.dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, self.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.body(self.normalize(x))

    def _extra_params(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "dropout": self.dropout}


@register_model("cnn")
class SmallCNN(Classifier):
    """Conv + batch norm + leaky ReLU blocks, dropout and a fully connected head (as in the papers).

    Each block has ``convs_per_block`` 3x3 convolutions and halves the resolution with max
    pooling; inputs as small as 8x8 work (two blocks -> 2x2). One convolution per block costs
    about a quarter of the default two at 28x28, which is what makes Fashion-MNIST training fit
    a few CPU minutes. The features are the output of the hidden fully connected layer.
    """

    def __init__(
        self,
        *,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.3,
        convs_per_block: int = 2,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.channels = check_int_list(channels, "channels", "cnn")
        self.hidden_width = check_int(hidden, "hidden", "cnn")
        self.dropout = check_float(dropout, "dropout", "cnn")
        self.convs_per_block = check_int(convs_per_block, "convs_per_block", "cnn")
        blocks: list[nn.Module] = []
        c_in, (h, w) = self.input_shape[0], self.input_shape[1:]
        for c in self.channels:
            for _ in range(self.convs_per_block):
                blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]
                c_in = c
            blocks.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"The 'input_shape' parameter of cnn is too small: {self.input_shape} cannot be halved "
                             f"{len(self.channels)} times (one max pooling per entry of channels); use fewer channels "
                             "entries or larger images.")
        self.body = nn.Sequential(*blocks, nn.Flatten(), nn.Dropout(self.dropout))
        self.fc = nn.Sequential(nn.Linear(c_in * h * w, self.hidden_width), nn.LeakyReLU(0.2), nn.Dropout(self.dropout))
        self.head = nn.Linear(self.hidden_width, self.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.fc(self.body(self.normalize(x)))

    def _extra_params(self) -> dict[str, Any]:
        return {
            "channels": list(self.channels),
            "hidden": self.hidden_width,
            "dropout": self.dropout,
            "convs_per_block": self.convs_per_block,
        }


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@register_model("resnet")
class ResNetCNN(Classifier):
    """A small ResNet (stem + three stages of basic blocks + global pooling), for 32x32 RGB."""

    def __init__(self, *, width: int = 32, blocks_per_stage: int = 1, **base: Any) -> None:
        super().__init__(**base)
        self.width = check_int(width, "width", "resnet")
        self.blocks_per_stage = check_int(blocks_per_stage, "blocks_per_stage", "resnet")
        w = self.width
        layers: list[nn.Module] = [
            nn.Conv2d(self.input_shape[0], w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        ]
        c_in = w
        for stage, c in enumerate((w, 2 * w, 4 * w)):
            for b in range(self.blocks_per_stage):
                layers.append(_BasicBlock(c_in, c, 2 if (stage > 0 and b == 0) else 1))
                c_in = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, self.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.body(self.normalize(x))

    def _extra_params(self) -> dict[str, Any]:
        return {"width": self.width, "blocks_per_stage": self.blocks_per_stage}
