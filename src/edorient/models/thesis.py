"""The CNN of the thesis (section 3.3), layer for layer.

::

    Conv2D(32,3x3) - Conv2D(32,3x3) - MaxPool(2) - Dropout(0.25)
    Conv2D(64,3x3) - Conv2D(64,3x3) - MaxPool(2) - Dropout(0.25)
    Flatten - Dense(512) - Dropout(0.5) - Dense(256) - Dropout(0.5) - heads Dense(3) (linear)

'same' padding, ReLU after every convolution and hidden dense layer, Keras' default
initialisation (Glorot-uniform weights, zero biases). At 224 x 224 x 1 it has 6,273,542 Keras
units and 102,958,822 parameters, the thesis' own counts. The variants are registered as
``thesis-dense1024`` (a Dense(1024) + Dropout before Dense(512)) and ``thesis-6conv`` (a third
block of two Conv2D(128)); ``thesis-single`` has one head. The flatten size follows
``input_size`` (56 and 28 for experiment 3). Keras flattens channels-last and torch
channels-first: the same function up to a fixed permutation of the first dense layer's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edorient.models._registry import register

__all__ = ["ThesisCNN", "ThesisConfig"]


@dataclass
class ThesisConfig:
    """Configuration of :class:`ThesisCNN`."""

    input_size: int = 224
    """Image side in pixels (square images)."""
    n_grains: int = 2
    """Output heads: 2 (bicrystal, Method 1) or 1 (single crystal)."""
    in_channels: int = 1
    """Image channels (grayscale)."""
    conv_blocks: tuple[int, ...] = (32, 64)
    """Filters of each block of two 3x3 convolutions + max-pool + dropout."""
    dense: tuple[int, ...] = (512, 256)
    """Hidden dense layers, each followed by dropout."""
    conv_dropout: float = 0.25
    """Dropout after each convolution block."""
    dense_dropout: float = 0.5
    """Dropout after each hidden dense layer."""
    keras_init: bool = True
    """Glorot-uniform weights and zero biases, as Keras; else torch's defaults."""


@register("thesis", "the thesis CNN: 2x(2 conv + pool + dropout), dense 512-256, two heads")
@register("thesis-single", "the thesis CNN with one head (single crystal)", n_grains=1)
@register("thesis-dense1024", "thesis + Dense(1024) before Dense(512) (thesis: out of memory)", dense=(1024, 512, 256))
@register("thesis-6conv", "thesis + a third conv block of 128 (thesis: did not converge)", conv_blocks=(32, 64, 128))
class ThesisCNN(nn.Module):
    """The thesis CNN; ``forward`` maps (B, C, S, S) images to (B, n_grains, 3) directions."""

    Config = ThesisConfig

    def __init__(self, config: ThesisConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c, s = config.in_channels, config.input_size
        for filters in config.conv_blocks:
            layers += [nn.Conv2d(c, filters, 3, padding="same"), nn.ReLU(inplace=True)]
            layers += [nn.Conv2d(filters, filters, 3, padding="same"), nn.ReLU(inplace=True)]
            layers += [nn.MaxPool2d(2), nn.Dropout(config.conv_dropout)]
            c, s = filters, s // 2
        if s < 1:
            raise ValueError(f"input size {config.input_size} is too small for {len(config.conv_blocks)} pooling layers")
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        dense: list[nn.Module] = []
        n = c * s * s
        for width in config.dense:
            dense += [nn.Linear(n, width), nn.ReLU(inplace=True), nn.Dropout(config.dense_dropout)]
            n = width
        self.dense = nn.Sequential(*dense)
        self.heads = nn.ModuleList(nn.Linear(n, 3) for _ in range(config.n_grains))
        if config.keras_init:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dense(self.flatten(self.features(x)))
        return torch.stack([head(h) for head in self.heads], dim=1)

