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


#: Keys every checkpoint holds (a model can be rebuilt from them).
MODEL_KEYS = ("model", "model_config")
#: Keys a checkpoint must hold to resume training from it.
RESUME_KEYS = (*MODEL_KEYS, "optimizer", "epoch", "step", "config", "best", "history")


def _load_failure(path: Path, exc: BaseException) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed."""
    import pickle
    import zipfile

    text = str(exc).strip()
    if not zipfile.is_zipfile(path):
        return (f"{path} is not a PyTorch checkpoint (truncated, or another kind of file); restore it from a "
                "backup or train again")
    if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in text.lower():
        return (f"{path} holds pickled Python objects (e.g. a whole model saved with torch.save(model)), which "
                "edorient does not load because they could run code; give a checkpoint of edorient train "
                "(a dict of tensors: save model.state_dict())")
    first = text.splitlines()[0][:200] if text else type(exc).__name__
    return f"{path} is a damaged checkpoint ({first}); restore it from a backup or train again"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = MODEL_KEYS) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; EdorientError (one line naming the file) if it
    is missing, truncated, not a checkpoint, holds pickled objects, or lacks a ``required`` key."""
    from edorient.errors import EdorientError

    path = Path(path)
    if not path.is_file():
        raise EdorientError(f"checkpoint {str(path)!r} not found; give the path of a best.pt or last.pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, IndexError ...
        raise EdorientError(_load_failure(path, exc)) from None
    if not isinstance(ckpt, dict):
        raise EdorientError(f"{path} holds a {type(ckpt).__name__}, not an edorient checkpoint (a dict with the "
                            "model's weights and configuration); give a best.pt or last.pt of edorient train")
    missing = [k for k in required if k not in ckpt]
    if missing or not isinstance(ckpt.get("model_config", {}), dict) or not isinstance(ckpt.get("model", {}), dict):
        what = f"lacks {', '.join(missing)}" if missing else "holds a malformed model or model_config"
        raise EdorientError(f"{path} is not an edorient checkpoint (it {what}); give a best.pt or last.pt of "
                            "edorient train")
    return ckpt


def describe_model_config(cfg: dict[str, Any]) -> str:
    """``compact-s, input 32 px, 2 head(s)``."""
    return f"{cfg.get('arch')}, input {cfg.get('input_size')} px, {cfg.get('n_grains')} head(s)"


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> nn.Module:
    """The model a loaded checkpoint records, with its weights (EdorientError naming ``path`` if
    the recorded architecture cannot be built or its weights do not fit it)."""
    from edorient.errors import EdorientError
    from edorient.models import model_from_config

    cfg = ckpt["model_config"]
    try:
        model = model_from_config(cfg)
    except EdorientError as exc:
        raise EdorientError(f"{path}: {exc}") from None
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise EdorientError(f"{path} records an architecture edorient cannot build ({describe_model_config(cfg)}: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); the checkpoint is "
                            "damaged or from another program") from None
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError):
        raise EdorientError(f"{path}: its weights do not fit the architecture it records "
                            f"({describe_model_config(cfg)}); the checkpoint is damaged or was altered") from None
    return model


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint with its weights, in eval mode."""
    ckpt = load_checkpoint(path, map_location)
    return model_from_checkpoint(ckpt, path).eval()
