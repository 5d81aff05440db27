"""Checkpoints: ``best.pt`` / ``last.pt`` with a JSON sidecar each, written atomically.

A checkpoint is a dict of tensors and primitives only, so it loads with
``torch.load(path, weights_only=True)``::

    {"model": state_dict, "model_config": {"arch": ..., ...}, "optimizer": state_dict,
     "scaler": state_dict | None, "epoch": int (1-based, completed), "step": int,
     "config": TrainConfig dict, "metrics": {name: float} of that epoch,
     "best": {"metric": str, "value": float, "epoch": int}, "history": [per-epoch dicts],
     "extra": dict (data set, stage, ...)}

Write order and recovery. After each epoch :func:`~edorient.training.fit` writes last.pt (then
its sidecar), then best.pt (when the epoch improved the selection metric), then metrics.csv.
last.pt is the commit point: it holds the whole history and which epoch is the best. A kill
between last.pt and best.pt leaves best.pt one best behind, but then the best epoch *is* the
last one, so :func:`repair_run_folder` (called on resume) rewrites best.pt from last.pt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edorient._utils.atomic import atomic_path

__all__ = ["load_checkpoint", "load_model", "repair_run_folder", "save_checkpoint"]


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    """Write ``ckpt`` to ``path`` and the non-tensor part to ``path`` with suffix ``.json``."""
    path = Path(path)
    _atomic(path, lambda p: torch.save(ckpt, p))
    _write_sidecar(path, ckpt)


def _write_sidecar(path: Path, ckpt: dict[str, Any]) -> None:
    side = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scaler", "history")}
    side["file"] = path.name
    _atomic(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(side, indent=2) + "\n"))


def _sidecar_epoch(path: Path) -> int | None:
    """The epoch recorded in ``path``'s .json sidecar; None if it is missing or unreadable."""
    try:
        return int(json.loads(path.with_suffix(".json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch stored in checkpoint ``path`` (memory-mapped, not read whole); None if unreadable."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: not the checkpoint we need
        return None


def repair_run_folder(run_dir: str | Path, last: dict[str, Any]) -> list[str]:
    """Make best.pt and the .json sidecars agree with ``last`` (the loaded last.pt) after a kill.

    Returns the names of the files rewritten. A best.pt that does not hold the run's best epoch
    is rewritten from last.pt when that epoch is the last one (the only case a kill leaves,
    see the module docstring); otherwise it cannot be restored: EdorientError.
    """
    from edorient.errors import EdorientError

    run_dir = Path(run_dir)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    last_epoch, best_epoch = int(last["epoch"]), int(last["best"]["epoch"])
    fixed = []
    if _sidecar_epoch(last_path) != last_epoch:  # killed between last.pt and last.json
        _write_sidecar(last_path, last)
        fixed.append("last.json")
    if best_epoch < 1:  # no epoch has improved yet: there is no best.pt to keep
        return fixed
    if _sidecar_epoch(best_path) == best_epoch:  # written after best.pt: best.pt is that epoch
        return fixed
    if best_epoch == last_epoch:  # killed before (or while) best.pt was written: last.pt is it
        save_checkpoint(best_path, last)
        return fixed + ["best.pt"]
    held = _checkpoint_epoch(best_path)
    if held != best_epoch:
        raise EdorientError(
            f"cannot resume {str(run_dir)!r}: best.pt holds epoch {held} but the run's best is epoch "
            f"{best_epoch}, which last.pt (epoch {last_epoch}) cannot restore; train into a new --out"
        )
    _write_sidecar(best_path, torch.load(best_path, map_location="cpu", weights_only=True))
    return fixed + ["best.json"]


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
