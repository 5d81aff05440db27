"""The training loop: :func:`fit` trains one model on one train/validation pair of Datasets.

Reads top to bottom: device and optimizer set-up, resume, then per epoch: train (seeded per
epoch, so a resumed run repeats an uninterrupted one exactly), validate, log a metrics.csv row,
save last.pt (and best.pt when the selection metric improved), draw the learning curve.

Per epoch ``e`` the global torch seed (dropout), the DataLoader's own generator (its workers'
base seed) and the workers' seeds (``worker_init_fn``) all derive from ``(seed, e)``, and the
training workers are started afresh each epoch, so a run resumed at epoch ``e`` draws exactly
what an uninterrupted one does, with or without DataLoader workers.

On resume the run folder is first repaired to agree with last.pt (best.pt, sidecars,
metrics.csv; see :mod:`edorient.training.checkpoint`) and temporaries of a killed write are
removed.

Datasets yield ``(image (C,S,S) float, target (n_grains,3) float, ...)``; anything after the
target (the sample id) is ignored.  A training set with a ``set_epoch(e)`` method
(:class:`~edorient.data.OnTheFlyDataset`) is told each epoch's number before it is read, so a
simulated set draws new images every epoch (and a resumed epoch the same ones).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import random
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from edorient._utils.atomic import atomic_path, atomic_write_text
from edorient.errors import EdorientError
from edorient.training import distributed as D
from edorient.training.checkpoint import load_checkpoint, repair_run_folder, save_checkpoint
from edorient.training.config import TrainConfig
from edorient.training.losses import build_loss, postprocess
from edorient.training.metrics import epoch_metrics
from edorient.training.symmetry import as_ops_tensor, laue_4mmm_ops

__all__ = ["CSV_COLUMNS", "FitResult", "fit", "make_optimizer", "resolve_device"]

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "epoch", "step", "lr", "train_loss", "val_loss", "mae_1", "sigma_1", "mae_2", "sigma_2",
    "sum_mae", "mae_of", "median_angle_deg", "epoch_time_s", "train_images_per_s", "best",
)


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    run_dir: Path
    """The run folder."""
    best_epoch: int
    """Epoch (1-based) of best.pt."""
    best_value: float
    """Its selection metric."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One dict per epoch (the rows of metrics.csv)."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; EdorientError for cuda without a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EdorientError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if not (name == "cpu" or name.startswith("cuda")):
        raise EdorientError(f"unknown device {name!r}; choose cpu, cuda, cuda:N or auto")
    if name == "cuda" and D.active():
        import os

        name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return torch.device(name)


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` (Adadelta with Keras' defaults for the thesis)."""
    params = list(params)
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=config.lr, rho=config.rho, eps=config.eps, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, eps=config.eps, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, eps=config.eps, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True)


def lr_at(config: TrainConfig, step: int, total_steps: int, elapsed_s: float = 0.0) -> float:
    """Learning rate after ``step`` steps: constant, or linear warm-up then cosine decay.

    With a time limit the cosine runs on ``max(step / total, elapsed / limit)``.
    """
    if config.schedule == "constant":
        return config.lr
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    frac = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    if config.time_limit_s > 0:
        frac = max(frac, elapsed_s / config.time_limit_s)
    frac = min(1.0, frac)
    lo = config.lr * config.min_lr_ratio
    return lo + 0.5 * (config.lr - lo) * (1 + math.cos(math.pi * frac))


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _tqdm(it, **kw):
    from edorient._utils.progress import progress_bar

    return progress_bar(it, **kw)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, device: torch.device, amp_dtype=None):
    """Predictions, targets (cpu float32) and the summed loss over ``loader``."""
    model.eval()
    preds, targets, loss_sum, n = [], [], 0.0, 0
    for batch in loader:
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        if device.type == "cuda" and amp_dtype is not None:
            with torch.autocast("cuda", dtype=amp_dtype):
                p = model(x)
        else:
            p = model(x)
        p = p.float()
        loss_sum += float(loss_fn(p, y)) * len(x)
        n += len(x)
        preds.append(p.cpu())
        targets.append(y.float().cpu())
    if not preds:
        return torch.empty(0, 0, 3), torch.empty(0, 0, 3), 0.0, 0
    return torch.cat(preds), torch.cat(targets), loss_sum, n


def _epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based): global torch RNG and the DataLoader's generator."""
    return int(seed) * 1_000_003 + int(epoch)


#: The "epoch" of the validation loader's seeds (any value no training epoch reaches).
_VAL_KEY = 2**31 - 1


def _quiet_if_main_gone(default, exc_type, exc, tb) -> None:
    """A DataLoader worker's ``sys.excepthook`` (multiprocessing's resource sharer thread reports
    its errors through it): a connection the main process dropped is not worth a traceback."""
    if not issubclass(exc_type, (ConnectionError, EOFError)):
        default(exc_type, exc, tb)


def _seed_worker(seed: int, epoch: int, worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: torch, numpy and ``random`` in a worker from (seed, epoch, id).

    The worker ignores Ctrl-C, which the terminal sends to every process of the job: the main
    process stops its workers. (A KeyboardInterrupt in a worker while numba loads the rendering
    kernels is printed as an ignored exception from a ctypes callback.) Nor does it print the
    connection errors of multiprocessing's resource sharer, which hands each batch's shared
    memory to the main process, when the main process stops taking it (Ctrl-C).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.excepthook = functools.partial(_quiet_if_main_gone, sys.excepthook)
    state = np.random.SeedSequence([int(seed) & (2**64 - 1), int(epoch), int(worker_id)]).generate_state(2)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))
    random.seed(int(state[0]) << 32 | int(state[1]))
    np.random.seed(state)


#: Temporaries of :func:`edorient._utils.atomic.atomic_path`: ``.NAME.RANDOM.tmp[.SUFFIX]``.
_TEMPORARY = re.compile(r"^\..+\.\w+\.tmp(\.\w+)?$")


def _remove_stale_temporaries(run_dir: Path) -> list[str]:
    """Delete temporaries a killed writer left in ``run_dir`` (metrics.csv, checkpoints, ...)."""
    gone = []
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            if _TEMPORARY.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                gone.append(p.name)
    return sorted(gone)


def _write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})


def _plot(path: Path, history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edorient._utils.figures import save_png

    ep = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [r["train_loss"] for r in history], "o-", label="train loss")
    a1.plot(ep, [r["val_loss"] for r in history], "s-", label="validation loss")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.legend()
    for k, lab in (("mae_1", "MAE$_1$"), ("mae_2", "MAE$_2$"), ("mae_of", "order-free MAE")):
        if history[0].get(k) is not None:
            a2.plot(ep, [r[k] for r in history], "o-", label=lab)
    a2.set_xlabel("epoch"), a2.set_ylabel("validation MAE (eq. 3.2)")
    ax3 = a2.twinx()
    ax3.plot(ep, [r["median_angle_deg"] for r in history], "k--", label="median angle")
    ax3.set_ylabel("median angular error (deg)")
    a2.legend(loc="upper right")
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def fit(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    laue_ops=None,
    resume: bool = False,
    extra: dict[str, Any] | None = None,
    step_hook: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_ds``, validate on ``val_ds`` every epoch, write ``run_dir``.

    Parameters
    ----------
    model
        A model from :func:`edorient.models.build_model` (weights initialised by the caller;
        seed before building it). Trained in place.
    train_ds, val_ds
        Datasets of ``(image, target, ...)``.
    config
        The training settings.
    run_dir
        Run folder: config.json, metrics.csv, learning_curve.png, best.pt/last.pt + .json.
    laue_ops
        (m, 3, 3) Laue-group operations (tensor, array or an object with ``.ops``) for the
        symmetry-aware losses and the angular metric; default 4/mmm (anatase).
    resume
        Continue from ``run_dir/last.pt`` if it exists (the epoch after the saved one).
    extra
        Plain-data facts to keep in config.json and the checkpoints (data set, stage, ...).
    step_hook
        Called as ``step_hook(epoch, step)`` after each optimisation step (tests, callbacks).

    Under torch.distributed (see :mod:`edorient.training.distributed`) the model is wrapped in
    DistributedDataParallel and only rank 0 writes.

    A resumed run first makes the folder agree with last.pt: a best.pt left behind by a kill
    between the two checkpoint writes is rewritten from last.pt, stale sidecars are rewritten,
    metrics.csv is rewritten from last.pt's history; temporaries of killed writes are removed.
    """
    config.validate()
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise EdorientError(
            f"empty {'training' if len(train_ds) == 0 else 'validation'} set; check the data folder and the subset"
        )
    run_dir = Path(run_dir)
    main, world, rank = D.is_main(), D.world_size(), D.rank()
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    ops = laue_4mmm_ops() if laue_ops is None else as_ops_tensor(laue_ops)

    model = _unwrap(model).to(device)
    if cuda and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(True)
    frozen = config.freeze == "features"
    if frozen:
        for p in model.features.parameters():
            p.requires_grad_(False)
    optimizer = make_optimizer((p for p in model.parameters() if p.requires_grad), config)
    amp_dtype = None
    if cuda and config.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loss_fn = build_loss(config.loss, ops).to(device)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())

    start_epoch, step, train_time, history = 0, 0, 0.0, []
    best = {"metric": config.select, "value": math.inf, "epoch": 0}
    last_path = run_dir / "last.pt"
    if resume and last_path.is_file():
        from edorient.models import model_config
        from edorient.training.checkpoint import RESUME_KEYS, describe_model_config

        ck = load_checkpoint(last_path, map_location=device, required=RESUME_KEYS)
        stored, built = ck["model_config"], model_config(model)
        differ = sorted(k for k in set(stored) & set(built) if stored[k] != built[k])
        if differ:
            raise EdorientError(
                f"cannot resume {str(run_dir)!r}: {last_path} holds a model of another architecture "
                f"({describe_model_config(stored)}) than this run builds ({describe_model_config(built)}; differs in "
                f"{', '.join(differ)}); resume without --arch/--input, or train into a new --out"
            )
        if not isinstance(ck["config"], dict):
            raise EdorientError(f"{last_path} is not an edorient checkpoint (malformed config); train into a new --out")
        for key in ("optimizer", "freeze"):
            if ck["config"].get(key) != getattr(config, key):
                raise EdorientError(
                    f"cannot resume {str(run_dir)!r}: it was trained with {key} {ck['config'].get(key)!r}, "
                    f"not {getattr(config, key)!r}; resume with the same settings"
                )
        try:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            if ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            start_epoch, step = int(ck["epoch"]), int(ck["step"])
            train_time, history, best = float(ck.get("train_time_s", 0.0)), list(ck["history"]), dict(ck["best"])
            int(best["epoch"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise EdorientError(f"cannot resume {str(run_dir)!r}: {last_path} does not fit this run's model and "
                                f"optimizer ({first}); the checkpoint is damaged or altered: train into a new --out") from None
        log.info("resuming %s after epoch %d", run_dir, start_epoch)
        if main:
            fixed = repair_run_folder(run_dir, ck)
            if fixed:
                log.warning("%s: %s repaired from last.pt (epoch %d; the last run was killed while saving)",
                            run_dir, " and ".join(fixed), start_epoch)
            if history:
                _write_csv(run_dir / "metrics.csv", history)  # it may lack last.pt's epoch
                if config.plot:
                    _plot(run_dir / "learning_curve.png", history)
    if main:
        gone = _remove_stale_temporaries(run_dir)
        if gone:
            log.info("%s: removed %d temporary file(s) of a killed write", run_dir, len(gone))

    net: nn.Module = model
    if D.active():
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)

    def train_loader_of(epoch: int) -> DataLoader:
        # Fresh each epoch (workers too): its generator and its workers' seeds come from
        # (seed, epoch), never from the global RNG, so a resumed epoch draws what it did before.
        gen = torch.Generator()
        gen.manual_seed(_epoch_seed(config.seed, epoch))
        init = functools.partial(_seed_worker, config.seed, epoch) if config.workers > 0 else None
        return DataLoader(train_ds, batch_size=config.batch_size, sampler=sampler, num_workers=config.workers,
                          pin_memory=cuda, generator=gen, worker_init_fn=init)

    val_part = Subset(val_ds, range(rank, len(val_ds), world)) if world > 1 else val_ds
    val_gen = torch.Generator()  # read in order; its own generator leaves the global RNG alone
    val_gen.manual_seed(_epoch_seed(config.seed, _VAL_KEY))
    val_init = functools.partial(_seed_worker, config.seed, _VAL_KEY) if config.workers > 0 else None
    val_loader = DataLoader(val_part, batch_size=config.batch_size, shuffle=False, num_workers=config.workers,
                            pin_memory=cuda, persistent_workers=config.workers > 0, generator=val_gen,
                            worker_init_fn=val_init)
    steps_per_epoch = -(-len(sampler) // config.batch_size)  # len() of every epoch's loader
    if config.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = config.epochs * steps_per_epoch

    from edorient.models import model_config

    resolved = {"train": config.to_dict(), "model": model_config(model), "extra": extra or {},
                "world_size": world, "device": str(device), "train_size": len(train_ds), "val_size": len(val_ds)}
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(resolved, indent=2) + "\n")

    stop = False
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(_epoch_seed(config.seed, epoch))  # dropout and anything else on the global RNG
        sampler.set_epoch(epoch)
        if hasattr(train_ds, "set_epoch"):  # simulated on the fly: fresh images every epoch
            train_ds.set_epoch(epoch)
        train_loader = train_loader_of(epoch)
        net.train()
        if frozen:
            model.features.eval()  # frozen: batch-norm statistics stay as they were too
        t0 = time.perf_counter()
        loss_sum, seen, lr = 0.0, 0, lr_at(config, step, total_steps, train_time)
        bar = _tqdm(train_loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                    disable=not (config.progress and main), leave=False)
        for i, batch in enumerate(bar):
            if i >= steps_per_epoch:
                break
            x = batch[0].to(device, non_blocking=True)
            y = batch[1].to(device, non_blocking=True).float()
            if has_bn and len(x) < 2:
                continue  # batch norm cannot train on one image
            if cuda and config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = lr_at(config, step, total_steps, train_time + time.perf_counter() - t0)
            for g in optimizer.param_groups:
                g["lr"] = lr
            with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = net(x)
            loss = loss_fn(pred.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            loss_sum += float(loss.detach()) * len(x)
            seen += len(x)
            if step_hook is not None:
                step_hook(epoch + 1, step)
            if config.time_limit_s > 0:
                over = train_time + time.perf_counter() - t0 >= config.time_limit_s
                if D.active():  # every rank stops at the same step
                    flag = torch.tensor([float(over)], device=device)
                    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                    over = bool(flag.item())
                if over:
                    stop = True
                    break
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
        bar.close()
        epoch_train_s = time.perf_counter() - t0
        train_time += epoch_train_s

        stats = torch.tensor([loss_sum, float(seen)], dtype=torch.float64)
        if D.active():  # batch-norm statistics: rank 0's, so every rank holds the same model
            for b in model.buffers():
                torch.distributed.broadcast(b, 0)
        pred, target, vloss, vn = evaluate(model, val_loader, loss_fn, device, amp_dtype)
        if D.active():
            stats = stats.to(device)  # NCCL reduces CUDA tensors only
            torch.distributed.all_reduce(stats)
            stats = stats.cpu()
            parts = [None] * world
            torch.distributed.all_gather_object(parts, (pred, target, vloss, vn))
            pred = torch.cat([p[0] for p in parts if p[3]])
            target = torch.cat([p[1] for p in parts if p[3]])
            vloss, vn = sum(p[2] for p in parts), sum(p[3] for p in parts)
        metrics = epoch_metrics(postprocess(config.loss, pred, ops), target, ops)
        row = {"epoch": epoch + 1, "step": step, "lr": lr,
               "train_loss": float(stats[0] / max(1.0, float(stats[1]))), "val_loss": vloss / max(1, vn),
               **metrics, "epoch_time_s": time.perf_counter() - t0,
               "train_images_per_s": float(stats[1]) / max(epoch_train_s, 1e-9)}
        value = row[config.select]
        improved = value < best["value"]
        if improved:
            best = {"metric": config.select, "value": float(value), "epoch": epoch + 1}
        row["best"] = int(improved)
        history.append(row)
        log.info("epoch %d: train %.4f val %.4f MAE1 %.4f MAE2 %s order-free %.4f median %.2f deg",
                 epoch + 1, row["train_loss"], row["val_loss"], row["mae_1"],
                 f"{row['mae_2']:.4f}" if "mae_2" in row else "-", row["mae_of"], row["median_angle_deg"])
        if main:
            ckpt = {"model": model.state_dict(), "model_config": model_config(model),
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "epoch": epoch + 1, "step": step, "train_time_s": train_time, "config": config.to_dict(),
                    "metrics": {k: v for k, v in row.items()}, "best": best, "history": history,
                    "extra": extra or {}}
            save_checkpoint(run_dir / "last.pt", ckpt)
            if improved:
                save_checkpoint(run_dir / "best.pt", ckpt)
            _write_csv(run_dir / "metrics.csv", history)
            if config.plot:
                _plot(run_dir / "learning_curve.png", history)
        D.barrier()
        if stop:
            log.info("time limit of %.0f s reached after epoch %d", config.time_limit_s, epoch + 1)
            break
    return FitResult(run_dir=run_dir, best_epoch=int(best["epoch"]), best_value=float(best["value"]), history=history)
