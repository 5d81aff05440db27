"""Keras-style layer table, unit and parameter counts, and the thesis' memory rule.

The thesis (section 3.3) counts "units" as Keras does: the sum over every layer of its output
size (batch excluded), the input, pooling, dropout and flatten layers included; activations
are fused into their layer, so they add nothing. Parameters are the trainable tensors (for the
thesis CNN exactly Keras' count; for batch norm Keras would add the two running statistics,
which torch keeps as buffers).

Eq. 3.4 estimates the GPU memory of training as ``GB = (units x batch + params) x 8e-9`` and
eq. 3.5 keeps the batch sizes whose estimate fits the card (11 GB, a GTX 1080 Ti).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LayerRow", "Summary", "feasible_batch_sizes", "memory_gb", "summarize"]

# Modules Keras fuses into the previous layer (activation="relu"): not counted as layers.
_FUSED = (nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Identity, nn.Hardswish)

#: Batch sizes eq. 3.5 considers (the thesis tried 16, 32, 64, 128).
BATCH_CANDIDATES: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table."""

    name: str
    """Dotted module name (``input`` for the input layer)."""
    kind: str
    """Layer type (the torch class name)."""
    shape: tuple[int, ...]
    """Output shape without the batch dimension (channels first)."""
    params: int
    """Trainable parameters of this layer."""

    @property
    def units(self) -> int:
        """Output size: the product of :attr:`shape`."""
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


@dataclass(frozen=True)
class Summary:
    """The layer table of a model at one input size."""

    rows: tuple[LayerRow, ...]

    @property
    def units(self) -> int:
        """Keras units: the sum of every layer's output size."""
        return sum(r.units for r in self.rows)

    @property
    def params(self) -> int:
        """Trainable parameters."""
        return sum(r.params for r in self.rows)

    def memory_gb(self, batch_size: int) -> float:
        """Eq. 3.4 at ``batch_size``."""
        return memory_gb(self.units, self.params, batch_size)

    def table(self) -> str:
        """The rows as fixed-width text."""
        lines = [f"{'layer':<22} {'type':<12} {'output shape':<18} {'units':>11} {'params':>13}"]
        for r in self.rows:
            shape = "x".join(str(s) for s in r.shape)
            lines.append(f"{r.name:<22} {r.kind:<12} {shape:<18} {r.units:>11,} {r.params:>13,}")
        lines.append(f"{'total':<22} {'':<12} {'':<18} {self.units:>11,} {self.params:>13,}")
        return "\n".join(lines)


def summarize(model: nn.Module, input_size: int | None = None, in_channels: int | None = None) -> Summary:
    """Layer table of ``model`` for one ``input_size`` image, by a forward pass on the meta device.

    The model is moved to nothing: a shape-only copy is built from its config when the model
    has one (``model.config``), so even the 103 M-parameter thesis CNN costs no memory or time.

    Examples
    --------
    >>> from edorient.models import build_model
    >>> s = summarize(build_model("thesis", input_size=28, device="meta"))
    >>> s.rows[0].name, s.rows[0].units
    ('input', 784)
    """
    cfg = getattr(model, "config", None)
    size = int(input_size if input_size is not None else cfg.input_size)
    chans = int(in_channels if in_channels is not None else getattr(cfg, "in_channels", 1))
    if cfg is not None and next(iter(model.parameters())).device.type != "meta":
        from edorient.models._registry import model_config, model_from_config

        d = model_config(model)
        d["input_size"] = size
        model = model_from_config(d, device="meta")
    rows: list[LayerRow] = [LayerRow("input", "Input", (chans, size, size), 0)]
    hooks = []

    def hook(name):
        def fn(mod, inp, out):
            if isinstance(mod, _FUSED):
                return
            n = sum(p.numel() for p in mod.parameters(recurse=False) if p.requires_grad)
            rows.append(LayerRow(name, type(mod).__name__, tuple(out.shape[1:]), int(n)))

        return fn

    for name, mod in model.named_modules():
        if len(list(mod.children())) == 0:
            hooks.append(mod.register_forward_hook(hook(name)))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.empty(1, chans, size, size, device="meta"))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return Summary(tuple(rows))


def memory_gb(units: int, params: int, batch_size: int) -> float:
    """Eq. 3.4: ``(units x batch + params) x 8e-9`` GB.

    Examples
    --------
    >>> round(memory_gb(6_273_542, 102_958_822, 128), 2)
    7.25
    """
    return (int(units) * int(batch_size) + int(params)) * 8e-9


def feasible_batch_sizes(
    units: int, params: int, gpu_memory_gb: float = 11.0, candidates: tuple[int, ...] = BATCH_CANDIDATES
) -> list[int]:
    """Eq. 3.5: the ``candidates`` whose eq. 3.4 estimate is at most ``gpu_memory_gb``.

    Examples
    --------
    >>> feasible_batch_sizes(6_273_542, 102_958_822, 11)
    [16, 32, 64, 128]
    """
    return [b for b in candidates if memory_gb(units, params, b) <= gpu_memory_gb]
