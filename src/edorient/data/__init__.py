"""Data sets: generate them on disk, split them, read them with bounded memory.

- :func:`generate_dataset` / :class:`GenerateConfig` -- thesis pairs, random bicrystals,
  single crystals, written as shards by several processes, resumable
  (:mod:`edorient.data.generate`).
- :func:`open_dataset` -> :class:`EDData` -- splits, subsets, labels, images and torch Datasets
  (:mod:`edorient.data.dataset`).
- :mod:`edorient.data.pairs` -- pair index <-> (i, j); :mod:`edorient.data.splits` -- hold-out
  splits and training subsets; :func:`describe_dataset`, :func:`contact_sheet` -- inspection.

The torch-dependent names (``open_dataset``, ``EDData``, ``EDTorchDataset``,
``OnTheFlyDataset``) are imported on first use, so that generation workers never import torch.
"""

from __future__ import annotations

from edorient.data.generate import MODES, GenerateConfig, generate_dataset
from edorient.data.pairs import n_pairs, pair_from_index, pair_to_index
from edorient.data.splits import write_subsets

_LAZY = {
    "open_dataset": "edorient.data.dataset",
    "EDData": "edorient.data.dataset",
    "EDTorchDataset": "edorient.data.dataset",
    "OnTheFlyDataset": "edorient.data.dataset",
    "InMemoryDataset": "edorient.data.dataset",
    "describe_dataset": "edorient.data._inspect",
    "contact_sheet": "edorient.data._inspect",
}

__all__ = [
    "MODES",
    "EDData",
    "EDTorchDataset",
    "GenerateConfig",
    "InMemoryDataset",
    "OnTheFlyDataset",
    "contact_sheet",
    "describe_dataset",
    "generate_dataset",
    "n_pairs",
    "open_dataset",
    "pair_from_index",
    "pair_to_index",
    "write_subsets",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edorient.data' has no attribute {name!r}")
