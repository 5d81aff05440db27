"""Checkpoints: ``best.pt`` / ``last.pt`` with a JSON sidecar each, written atomically.

A checkpoint is a dict of tensors and primitives only, so it loads with
``torch.load(path, weights_only=True)``::

    {"model": state_dict, "model_config": {"arch": ..., ...}, "optimizer": state_dict,
     "scaler": state_dict | None, "epoch": int (1-based, completed), "step": int,
     "config": TrainConfig dict, "metrics": {name: float} of that epoch,
     "best": {"metric": str, "value": float, "epoch": int}, "history": [per-epoch dicts],
     "extra": dict (data set, stage, ...)}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edorient._utils.atomic import atomic_path

__all__ = ["load_checkpoint", "load_model", "save_checkpoint"]


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    """Write ``ckpt`` to ``path`` and the non-tensor part to ``path`` with suffix ``.json``."""
    path = Path(path)
    _atomic(path, lambda p: torch.save(ckpt, p))
    side = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scaler", "history")}
    side["file"] = path.name
    _atomic(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(side, indent=2) + "\n"))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        from edorient.errors import EdorientError

        raise EdorientError(f"checkpoint {str(path)!r} not found; give the path of a best.pt or last.pt")
    return torch.load(path, map_location=map_location, weights_only=True)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint with its weights, in eval mode."""
    from edorient.models import model_from_config

    ckpt = load_checkpoint(path, map_location)
    model = model_from_config(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.eval()
