"""Compact CNNs for CPUs: a patchify stem, strided convolutions with batch norm, small head.

::

    Conv(k=p, stride=p) - BN - ReLU                     (patchify: S -> S/p, no pixel lost)
    per stage: Conv3x3(stride 2) - BN - ReLU, then `depth` x [Conv3x3 - BN - ReLU]
    Flatten (or global average pooling) - Dense(hidden) - ReLU - Dropout - heads Dense(3)

A diffraction spot is a couple of pixels wide, so the stem does not pool: a p x p patch goes
into p*p-ish channels losslessly, and the strided convolutions do the rest. The pattern is
centred on the direct beam, so where a spot sits matters: the default ``head="flatten"`` keeps
the last map's positions; ``compact-gap`` pools them away (cheaper, position-blind).
At 224 the default costs about 1/40 of the thesis CNN's multiply-adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edorient.models._registry import register

__all__ = ["CompactCNN", "CompactConfig"]


@dataclass
class CompactConfig:
    """Configuration of :class:`CompactCNN`."""

    input_size: int = 224
    """Image side in pixels (square images)."""
    n_grains: int = 2
    """Output heads: 2 (bicrystal) or 1 (single crystal)."""
    in_channels: int = 1
    """Image channels (grayscale)."""
    stem_channels: int = 24
    """Channels of the patchify stem."""
    patch: int = 4
    """Stem kernel and stride (1 disables the downsampling of the stem)."""
    widths: tuple[int, ...] = (48, 96, 192)
    """Channels of each stride-2 stage."""
    depth: int = 1
    """Extra stride-1 3x3 convolutions per stage."""
    head: str = "flatten"
    """``"flatten"`` (keeps positions) or ``"gap"`` (global average pooling)."""
    hidden: int = 256
    """Width of the hidden dense layer."""
    dropout: float = 0.1
    """Dropout after the hidden dense layer."""


def _cbr(cin: int, cout: int, k: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register("compact", "CPU model: patchify stem, 3 strided BN stages, flatten, dense 256 (~1/40 thesis cost)")
@register("compact-gap", "compact with global average pooling instead of flatten", head="gap")
@register("compact-s", "a smaller compact model (fewer channels, no extra convolutions)", stem_channels=16, widths=(32, 64, 128), depth=0)
class CompactCNN(nn.Module):
    """Compact CNN; ``forward`` maps (B, C, S, S) images to (B, n_grains, 3) directions."""

    Config = CompactConfig

    def __init__(self, config: CompactConfig) -> None:
        super().__init__()
        if config.head not in ("flatten", "gap"):
            raise ValueError(f"head must be 'flatten' or 'gap', got {config.head!r}")
        self.config = config
        layers = _cbr(config.in_channels, config.stem_channels, config.patch, config.patch, 0)
        s = config.input_size // config.patch
        c = config.stem_channels
        for w in config.widths:
            layers += _cbr(c, w, 3, 2, 1)
            s = (s - 1) // 2 + 1
            for _ in range(config.depth):
                layers += _cbr(w, w, 3, 1, 1)
            c = w
        if s < 1:
            raise ValueError(f"input size {config.input_size} is too small for this model")
        self.features = nn.Sequential(*layers)
        if config.head == "gap":
            self.flatten = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            n = c
        else:
            self.flatten = nn.Flatten()
            n = c * s * s
        self.dense = nn.Sequential(nn.Linear(n, config.hidden), nn.ReLU(inplace=True), nn.Dropout(config.dropout))
        self.heads = nn.ModuleList(nn.Linear(config.hidden, 3) for _ in range(config.n_grains))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dense(self.flatten(self.features(x)))
        return torch.stack([head(h) for head in self.heads], dim=1)
