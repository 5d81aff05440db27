"""Models shipped with edorient, trained on edorient's own simulator.

Each model is two files in this folder: ``NAME.pt``, a checkpoint of weights and model
configuration (no optimizer state; it loads with ``torch.load(..., weights_only=True)``), and
``NAME.json``, its card: what it was trained on (the exact ``edorient generate`` and
``edorient train`` commands, seeds, sizes, noise), how long, and its errors measured on
simulated test images it never saw. Everywhere a run folder is accepted (``edorient predict
--run``, ``edorient evaluate --run``), ``pretrained:NAME`` names one of these.

They are trained on simulated anatase only (kinematic, 50 Å, 200 kV, the conventions of
:mod:`edorient.conventions`); on a microscope's images, check them against template matching
(``edorient predict`` without ``--run``) before trusting them.

Examples
--------
>>> sorted(available())
['anatase-bicrystal', 'anatase-single']
>>> card("anatase-bicrystal")["grains"]
2
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from edorient.errors import EdorientError

__all__ = ["PREFIX", "available", "card", "checkpoint_path", "is_pretrained", "load", "resolve"]

#: ``--run pretrained:NAME`` selects a shipped model.
PREFIX = "pretrained:"


def _folder() -> Path:
    return Path(str(resources.files(__name__)))


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in _folder().glob("*.pt") if p.with_suffix(".json").is_file())


def checkpoint_path(name: str) -> Path:
    """The ``.pt`` file of shipped model ``name``."""
    path = _folder() / f"{name}.pt"
    if name not in available():
        raise EdorientError(f"no pretrained model {name!r}; choose one of: {', '.join(available()) or '(none)'}")
    return path


def card(name: str) -> dict[str, Any]:
    """The model card (``NAME.json``) of shipped model ``name``."""
    return json.loads(checkpoint_path(name).with_suffix(".json").read_text())


def is_pretrained(run: str | Path) -> bool:
    """Whether ``run`` is of the form ``pretrained:NAME``."""
    return str(run).startswith(PREFIX)


def resolve(run: str | Path) -> Path:
    """``pretrained:NAME`` -> its checkpoint; anything else is returned as a path."""
    if is_pretrained(run):
        return checkpoint_path(str(run)[len(PREFIX) :])
    return Path(run)


def load(name: str):
    """The shipped model ``name`` in eval mode (CPU) and its input size."""
    from edorient.training.checkpoint import load_model

    model = load_model(checkpoint_path(name))
    return model, int(model.config.input_size)
