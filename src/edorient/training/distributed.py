"""torch.distributed helpers: ``torchrun --nproc-per-node N -m edorient train ...``.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; :func:`setup` starts the process group (NCCL on
CUDA, gloo on CPU). :func:`edorient.training.fit` then wraps the model in
DistributedDataParallel, shards the training set with a DistributedSampler (``set_epoch``
every epoch), gathers the validation predictions, and lets rank 0 alone write files. Rank 0
alone logs, too: :func:`setup` leaves the other ranks' ``edorient`` loggers warnings and errors
only, so a run's log has one line per epoch, not one per process.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

__all__ = ["cleanup", "is_main", "quiet_other_ranks", "rank", "setup", "world_size"]

#: The logger above every module of the package.
PACKAGE_LOGGER = "edorient"


def setup(device: str = "auto") -> bool:
    """Start the process group if launched with WORLD_SIZE > 1; return whether it did."""
    if dist.is_available() and dist.is_initialized():
        quiet_other_ranks()
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    quiet_other_ranks()
    return True


def quiet_other_ranks() -> None:
    """On ranks other than 0, let the package log warnings and errors only (no per-epoch info).

    Set on the ``edorient`` logger, so it holds for every module and whatever handlers the
    program configures, before or after. Rank 0 keeps the level it has.
    """
    if rank() != 0:
        logging.getLogger(PACKAGE_LOGGER).setLevel(logging.WARNING)


def cleanup() -> None:
    """Destroy the process group if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process' rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes files (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if active():
        dist.barrier()
