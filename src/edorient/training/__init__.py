"""edorient.training: losses, metrics, the training loop, checkpoints, fine-tuning, DDP.

- :func:`fit` trains one model on a train/validation pair of torch Datasets and writes a run
  folder (config.json, metrics.csv, learning_curve.png, best.pt/last.pt + .json sidecars).
- :func:`finetune` runs :func:`fit` subset by subset (``all`` or ``dense``).
- :data:`LOSSES` (thesis, order-free, symmetry, symmetry-angular) and :func:`epoch_metrics`.
- :class:`TrainConfig` and :data:`PRESETS` (``thesis``, ``cpu``).
"""

from edorient.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from edorient.training.config import PRESETS, TrainConfig, preset
from edorient.training.finetune import finetune, stage_dir
from edorient.training.losses import LOSSES, available_losses, build_loss
from edorient.training.loop import FitResult, fit, make_optimizer, resolve_device
from edorient.training.metrics import epoch_metrics
from edorient.training.symmetry import laue_4mmm_ops, reduce_to_sector, symmetric_angle

__all__ = [
    "LOSSES",
    "PRESETS",
    "FitResult",
    "TrainConfig",
    "available_losses",
    "build_loss",
    "epoch_metrics",
    "finetune",
    "fit",
    "laue_4mmm_ops",
    "load_checkpoint",
    "load_model",
    "make_optimizer",
    "preset",
    "reduce_to_sector",
    "resolve_device",
    "save_checkpoint",
    "stage_dir",
    "symmetric_angle",
]
