"""Fine-tuning over subsets (the thesis' pre-experiment 2 and chapter 4).

Stage 1 trains on subset 1; stage k+1 starts from stage k's best weights and trains on subset
k+1. ``mode="all"`` retrains every layer at every stage; ``mode="dense"`` freezes the
convolutional part (``model.features``) from stage 2 on (the thesis' choice (ii): faster and
more stable). Each stage has its own run folder ``stage_01``, ``stage_02``, ... with a fresh
optimizer, and writes ``done`` when finished, so a resumed fine-tuning skips finished stages
and resumes the interrupted one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn
from torch.utils.data import Dataset

from edorient.errors import EdorientError
from edorient.training import distributed as D
from edorient.training.checkpoint import load_checkpoint
from edorient.training.config import TrainConfig
from edorient.training.loop import FitResult, fit

__all__ = ["finetune", "stage_dir"]

StageData = tuple[Dataset, Dataset] | Callable[[], tuple[Dataset, Dataset]]


def stage_dir(run_root: str | Path, k: int) -> Path:
    """Run folder of stage ``k`` (1-based)."""
    return Path(run_root) / f"stage_{k:02d}"


def finetune(
    model: nn.Module,
    stages: Sequence[StageData],
    config: TrainConfig,
    run_root: str | Path,
    *,
    mode: str = "dense",
    first_epochs: int | None = None,
    later_epochs: int | None = None,
    laue_ops=None,
    resume: bool = False,
    extra: dict[str, Any] | None = None,
) -> list[FitResult]:
    """Train ``model`` subset by subset; returns one :class:`FitResult` per stage.

    Parameters
    ----------
    stages
        Per subset a ``(train_ds, val_ds)`` pair, or a function returning one (built when
        its stage starts).
    mode
        ``"all"`` (every layer retrained) or ``"dense"`` (convolutions frozen after stage 1).
    first_epochs, later_epochs
        Epochs of stage 1 and of every later stage (default ``config.epochs``).
    """
    if mode not in ("all", "dense"):
        raise EdorientError(f"unknown fine-tuning mode {mode!r}; choose all or dense")
    if not stages:
        raise EdorientError("fine-tuning needs at least one subset")
    first = config.epochs if first_epochs is None else int(first_epochs)
    later = config.epochs if later_epochs is None else int(later_epochs)
    results: list[FitResult] = []
    for k, data in enumerate(stages, start=1):
        folder = stage_dir(run_root, k)
        if k > 1:
            prev = stage_dir(run_root, k - 1) / "best.pt"
            model.load_state_dict(load_checkpoint(prev)["model"])
        cfg = dataclasses.replace(
            config, epochs=first if k == 1 else later, freeze="features" if (mode == "dense" and k > 1) else "none"
        )
        if resume and (folder / "done").is_file():
            ck = load_checkpoint(folder / "last.pt")
            results.append(FitResult(folder, int(ck["best"]["epoch"]), float(ck["best"]["value"]), list(ck["history"])))
            continue
        train_ds, val_ds = data() if callable(data) else data
        info = {**(extra or {}), "stage": k, "n_stages": len(stages), "finetune": mode,
                "init": str(stage_dir(run_root, k - 1) / "best.pt") if k > 1 else None}
        res = fit(model, train_ds, val_ds, cfg, folder, laue_ops=laue_ops, resume=resume, extra=info)
        if D.is_main():
            (folder / "done").write_text(json.dumps({"best_epoch": res.best_epoch, "best_value": res.best_value}) + "\n")
        D.barrier()
        results.append(res)
    return results
