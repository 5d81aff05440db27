"""The training configuration and its presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edorient.errors import EdorientError

__all__ = ["PRESETS", "TrainConfig", "preset"]


@dataclass
class TrainConfig:
    """Everything :func:`edorient.training.fit` needs besides the model and the data."""

    epochs: int = 10
    """Epochs to train (a resumed run continues up to this number)."""
    batch_size: int = 128
    """Images per optimisation step (per process under DDP)."""
    loss: str = "thesis"
    """Loss name: thesis, order-free, symmetry, symmetry-angular."""
    optimizer: str = "adadelta"
    """adadelta, adam, adamw or sgd."""
    lr: float = 1.0
    """Peak learning rate."""
    rho: float = 0.95
    """Adadelta decay (Keras default 0.95)."""
    eps: float = 1e-7
    """Optimizer epsilon (Keras' Adadelta default 1e-7)."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 0.0
    """Weight decay (decoupled for adamw)."""
    schedule: str = "constant"
    """Learning-rate schedule: constant, or cosine (linear warm-up, cosine to min_lr_ratio)."""
    warmup_steps: int = 0
    """Linear warm-up steps of the cosine schedule."""
    min_lr_ratio: float = 0.02
    """Final learning rate of the cosine schedule, as a fraction of lr."""
    grad_clip: float = 0.0
    """Clip the gradient norm to this value (0: no clipping)."""
    select: str = "sum_mae"
    """Validation metric that picks best.pt (lower wins): sum_mae (the thesis), mae_of,
    median_angle_deg or val_loss."""
    freeze: str = "none"
    """``features`` freezes the convolutional part (fine-tuning ``dense``); ``none``."""
    device: str = "auto"
    """cpu, cuda, cuda:N or auto."""
    amp: bool = True
    """Mixed precision (bf16, else fp16 with a grad scaler); CUDA only."""
    channels_last: bool = True
    """channels_last memory format; CUDA only."""
    workers: int = 0
    """DataLoader worker processes."""
    seed: int = 0
    """Seed of the weights' initialisation (by the caller), shuffling and dropout."""
    time_limit_s: float = 0.0
    """Stop training after this many seconds of training (0: no limit); the cosine schedule
    then runs on time, so a time-limited run anneals fully."""
    max_steps_per_epoch: int = 0
    """Cap on optimisation steps per epoch (0: the whole training set)."""
    progress: bool = True
    """tqdm progress bars (rank 0 only)."""
    plot: bool = True
    """Write learning_curve.png every epoch."""

    def validate(self) -> None:
        """Raise :class:`EdorientError` on an impossible setting."""
        from edorient.training.losses import LOSSES

        if self.epochs < 1:
            raise EdorientError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise EdorientError(f"batch size must be at least 1, got {self.batch_size}")
        if self.loss not in LOSSES:
            raise EdorientError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        if self.optimizer not in ("adadelta", "adam", "adamw", "sgd"):
            raise EdorientError(f"unknown optimizer {self.optimizer!r}; choose adadelta, adam, adamw or sgd")
        if self.schedule not in ("constant", "cosine"):
            raise EdorientError(f"unknown schedule {self.schedule!r}; choose constant or cosine")
        if self.select not in ("sum_mae", "mae_of", "median_angle_deg", "val_loss"):
            raise EdorientError(
                f"unknown selection metric {self.select!r}; choose sum_mae, mae_of, median_angle_deg or val_loss"
            )
        if self.freeze not in ("none", "features"):
            raise EdorientError(f"unknown freeze {self.freeze!r}; choose none or features")
        if not (self.lr > 0):
            raise EdorientError(f"learning rate must be positive, got {self.lr}")
        if self.workers < 0:
            raise EdorientError(f"workers must be >= 0, got {self.workers}")
        import math

        ranges = (  # name on the command line, value, lowest, highest (inclusive unless noted)
            ("--grad-clip (gradient-norm clip; 0: none)", self.grad_clip, 0.0, math.inf),
            ("--time-limit (seconds; 0: none)", self.time_limit_s, 0.0, math.inf),
            ("--weight-decay", self.weight_decay, 0.0, math.inf),
            ("--momentum", self.momentum, 0.0, 1.0),
            ("--rho (Adadelta decay)", self.rho, 0.0, 1.0),
            ("--min-lr-ratio (final / peak learning rate)", self.min_lr_ratio, 0.0, 1.0),
            ("--warmup-steps", self.warmup_steps, 0, math.inf),
            ("--max-steps-per-epoch (0: all)", self.max_steps_per_epoch, 0, math.inf),
        )
        for name, value, lo, hi in ranges:
            if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
                span = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
                raise EdorientError(f"{name} must be {span}, got {value}")
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise EdorientError(f"--eps (optimizer epsilon) must be > 0, got {self.eps}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON and checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`, ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: Named presets: model architecture plus training settings.
PRESETS: dict[str, dict[str, Any]] = {
    # The thesis: Adadelta with the Keras defaults, batch 128, the thesis loss, best epoch by the
    # sum of the two validation MAEs (8:2 train/val split from the data set's "train"/"val").
    "thesis": dict(
        arch="thesis", loss="thesis", optimizer="adadelta", lr=1.0, rho=0.95, eps=1e-7,
        batch_size=128, epochs=500, schedule="constant", select="sum_mae", weight_decay=0.0,
    ),
    # A useful model in under 30 minutes on a 2-core CPU (see docs/benchmarks.md, Training).
    "cpu": dict(
        arch="compact", loss="symmetry", optimizer="adamw", lr=2e-3, weight_decay=1e-4,
        batch_size=64, epochs=12, schedule="cosine", warmup_steps=100, select="median_angle_deg",
        time_limit_s=25 * 60, eps=1e-8,
    ),
}


def preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s settings (``arch`` included)."""
    if name not in PRESETS:
        raise EdorientError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
