"""The classifier zoo: MLP, a small CNN as in the papers, and a ResNet-style CNN for RGB."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._base import Classifier, register_model

__all__ = ["MLP", "SmallCNN", "ResNetCNN"]


@register_model("mlp")
class MLP(Classifier):
    """Fully connected classifier; ``hidden`` lists the widths of its hidden layers."""

    def __init__(self, *, hidden: Sequence[int] = (256, 128), dropout: float = 0.2, **base: Any) -> None:
        super().__init__(**base)
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        layers: list[nn.Module] = [nn.Flatten()]
        width = int(torch.tensor(self.input_shape).prod())
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
        self.channels = tuple(int(c) for c in channels)
        self.hidden_width = int(hidden)
        self.dropout = float(dropout)
        self.convs_per_block = int(convs_per_block)
        if self.convs_per_block < 1:
            raise ValueError(f"The 'convs_per_block' parameter of SmallCNN must be an int in [1, inf). Got {convs_per_block} instead.")
        blocks: list[nn.Module] = []
        c_in, (h, w) = self.input_shape[0], self.input_shape[1:]
        for c in self.channels:
            for _ in range(self.convs_per_block):
                blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]
                c_in = c
            blocks.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"Input {self.input_shape} is too small for {len(self.channels)} pooling blocks.")
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
        self.width = int(width)
        self.blocks_per_stage = int(blocks_per_stage)
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
